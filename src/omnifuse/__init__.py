"""omnifuse: compose modality encoders with causal LMs; process, train, evaluate, serve and export."""

from transformers import AutoConfig, AutoModelForImageTextToText

from omnifuse.config import ModalitySpec, OmniConfig
from omnifuse.modeling.model import OmniForConditionalGeneration

__version__ = "0.1.0"

AutoConfig.register("omnifuse", OmniConfig, exist_ok=True)
AutoModelForImageTextToText.register(OmniConfig, OmniForConditionalGeneration, exist_ok=True)

__all__ = ["ModalitySpec", "OmniConfig", "OmniForConditionalGeneration"]
