"""omnifuse: compose modality encoders with causal LMs; process, train, evaluate, serve and export."""

from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from omnifuse.config import ModalitySpec, OmniConfig
from omnifuse.modeling.model import OmniForConditionalGeneration
from omnifuse.processing.processor import OmniProcessor

__version__ = "0.1.0"

AutoConfig.register("omnifuse", OmniConfig, exist_ok=True)
AutoModelForImageTextToText.register(OmniConfig, OmniForConditionalGeneration, exist_ok=True)
AutoProcessor.register(OmniConfig, OmniProcessor, exist_ok=True)

__all__ = ["ModalitySpec", "OmniConfig", "OmniForConditionalGeneration", "OmniProcessor"]
