"""transformers' LLaVA format, both ways: export an omnifuse model, import a LLaVA checkpoint.

Export writes a folder that `AutoModelForImageTextToText` / `AutoProcessor` and `vllm serve` load with
no omnifuse installed; import turns any transformers LLaVA folder into an omnifuse model + processor.

Example:
    >>> from omnifuse.interop.llava import check_llava_compatible, export_llava, import_llava
    >>> check_llava_compatible(model)
    []
    >>> export_llava("runs/demo/model", "runs/demo/llava")["format"]
    'llava'
    >>> model, processor = import_llava("runs/demo/llava")
"""

from omnifuse.interop.llava_export import ExportError, check_llava_compatible, export_llava
from omnifuse.interop.llava_import import import_llava

__all__ = ["ExportError", "check_llava_compatible", "export_llava", "import_llava"]
