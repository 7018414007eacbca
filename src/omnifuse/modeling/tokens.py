"""The one place that says how many LM tokens a media unit becomes.

A unit is what the encoder sees at once: an image crop, a video frame, an audio or sequence window.
encoder output length (probed) -> CLS selection -> projector compression. The processor uses this
to expand placeholders and the model uses it to keep the valid projected rows, so the two can
never disagree.
"""

from __future__ import annotations

from omnifuse.config import KINDS, ModalitySpec
from omnifuse.modeling.encoders import probe_encoder, selected_length, valid_output_length
from omnifuse.modeling.projectors import projector_output_length


def projector_layout(kind: str) -> str:
    """Visual features form a square patch grid; audio and other signals form a time sequence."""
    return KINDS[kind].layout


def encoder_token_count(encoder_spec: ModalitySpec, valid_input: int | None = None) -> int:
    """Feature tokens the encoder hands the projector for one unit (after CLS selection)."""
    if valid_input is None:
        encoder_tokens = probe_encoder(encoder_spec.encoder).output_length
    else:
        encoder_tokens = valid_output_length(encoder_spec.encoder, valid_input)
    return selected_length(encoder_spec, encoder_tokens)


def unit_token_count(spec: ModalitySpec, encoder_spec: ModalitySpec, valid_input: int | None = None) -> int:
    """LM tokens for one unit; `valid_input` is the real (unpadded) input length of a padded window."""
    if spec.fusion == "cross_attention":
        return 1  # one marker token per unit: its features reach the LM through cross-attention instead
    return projector_output_length(
        spec.projector, encoder_token_count(encoder_spec, valid_input), projector_layout(spec.kind)
    )
