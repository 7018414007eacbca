"""Per-modality item processing: one media part -> encoder units + the token ids that replace its placeholder.

The settings of each modality come from its encoder (probed: input size, mel bins, window) with
overrides from the modality spec's `processing` dict, so nothing here is family-specific.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import torch

from omnifuse.config import ModalitySpec
from omnifuse.modeling.encoders import probe_encoder
from omnifuse.modeling.tokens import unit_token_count
from omnifuse.processing.audio import AudioSettings, audio_to_windows
from omnifuse.processing.image import ImageSettings, image_to_crops
from omnifuse.processing.media import MediaError, MediaLimits, load_audio, load_image, load_video
from omnifuse.processing.video import frames_to_tensor

VIDEO_SAMPLING_KEYS = ("num_frames", "fps")


@dataclass
class EncodedMedia:
    values: torch.Tensor  # (units, ...) crops, frames or windows
    mask: torch.Tensor | None  # (units, length) valid frames/samples, audio only
    expansion: list[int]  # token ids that replace the item's single placeholder


def part_source(part: dict[str, Any], kind: str) -> Any:
    """The medium inside a content part: path, url, data URI, in-memory object or base64 audio."""
    if part["type"] in ("image_url", "video_url"):
        value = part[part["type"]]
        return value["url"] if isinstance(value, dict) else value
    if part["type"] == "input_audio":
        try:
            return base64.b64decode(part["input_audio"]["data"], validate=True)
        except (KeyError, TypeError, ValueError) as err:
            raise MediaError("audio", "", f"input_audio needs base64 'data': {err}") from err
    for key in ("path", "url", kind, "array"):
        if part.get(key) is not None:
            # In-memory audio may carry its own rate: {"type": "audio", "audio": array, "sampling_rate": 44100}
            rate = part.get("sampling_rate")
            return (part[key], rate) if rate is not None and key in (kind, "array") else part[key]
    raise MediaError(kind, "", f"content part has no media source (one of path, url, {kind})")


class ImageItems:
    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        options = {k: v for k, v in spec.processing.items() if k not in VIDEO_SAMPLING_KEYS}
        self.settings = ImageSettings(size=probe_encoder(owner.encoder).input_shape[-1], **options)
        self.unit_tokens = unit_token_count(spec, owner)
        self.placeholder_id = placeholder_id

    def encode(self, source: Any, item: str, limits: MediaLimits, tokenizer) -> EncodedMedia:
        crops = image_to_crops(load_image(source, item=item, limits=limits), self.settings)
        return EncodedMedia(crops, None, [self.placeholder_id] * (self.unit_tokens * crops.shape[0]))


class VideoItems(ImageItems):
    """Frames through the image encoder; each frame's tokens follow a timestamp marker (frame order)."""

    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        super().__init__(spec, owner, placeholder_id)
        self.sampling = {k: spec.processing[k] for k in VIDEO_SAMPLING_KEYS if k in spec.processing}

    def encode(self, source: Any, item: str, limits: MediaLimits, tokenizer) -> EncodedMedia:
        frames, times = load_video(source, item=item, limits=limits, **self.sampling)
        expansion: list[int] = []
        for t in times:
            marker = tokenizer(f"<{t:.1f}s>", add_special_tokens=False, split_special_tokens=True).input_ids
            expansion += marker + [self.placeholder_id] * self.unit_tokens
        return EncodedMedia(frames_to_tensor(frames, self.settings), None, expansion)


class AudioItems:
    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        probe = probe_encoder(owner.encoder)
        options = dict(spec.processing)
        if probe.main_input_name == "input_features":
            hop = options.setdefault("hop_length", 160)
            defaults = {
                "input_kind": "log_mel",
                "n_mels": probe.input_shape[0],
                "window_samples": probe.input_length * hop,
            }
        else:
            defaults = {"input_kind": "waveform", "window_samples": probe.input_length}
        self.settings = AudioSettings(**{**defaults, **options})
        self.spec, self.owner, self.placeholder_id = spec, owner, placeholder_id

    def encode(self, source: Any, item: str, limits: MediaLimits, tokenizer) -> EncodedMedia:
        waveform = load_audio(source, sampling_rate=self.settings.sampling_rate, item=item, limits=limits)
        values, mask = audio_to_windows(waveform, self.settings)
        n_tokens = sum(unit_token_count(self.spec, self.owner, int(valid)) for valid in mask.sum(-1).tolist())
        return EncodedMedia(values, mask, [self.placeholder_id] * n_tokens)


ITEM_PROCESSORS = {"image": ImageItems, "video": VideoItems, "audio": AudioItems}
