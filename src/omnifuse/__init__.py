"""omnifuse: compose modality encoders with causal LMs; process, train, evaluate, serve and export."""

from omnifuse.pretrained.timm_support import prepare_torchvision

prepare_torchvision()  # before transformers: lets a CUDA-only PyPI torchvision import beside CPU torch (for timm)

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor  # noqa: E402

from omnifuse.config import ModalitySpec, OmniConfig  # noqa: E402
from omnifuse.modeling.model import OmniForConditionalGeneration  # noqa: E402
from omnifuse.processing.processor import OmniProcessor  # noqa: E402

__version__ = "0.1.0"

AutoConfig.register("omnifuse", OmniConfig, exist_ok=True)
AutoModelForImageTextToText.register(OmniConfig, OmniForConditionalGeneration, exist_ok=True)
AutoProcessor.register(OmniConfig, OmniProcessor, exist_ok=True)

__all__ = ["ModalitySpec", "OmniConfig", "OmniForConditionalGeneration", "OmniProcessor"]
