"""Per-kind item processing: one media part -> encoder units + the token ids that replace its placeholder.

One class per *kind* (image, video, audio, sequence), never per modality name: a modality named
"depth" of kind image uses `ImageItems` with its own encoder's settings. Settings come from the
encoder (probed: input size, mel bins, window) with overrides from the spec's `processing` dict.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from omnifuse.config import ModalitySpec
from omnifuse.modeling.encoders import probe_encoder
from omnifuse.modeling.tokens import unit_token_count
from omnifuse.processing.audio import AudioSettings, audio_to_windows
from omnifuse.processing.image import ImageSettings, image_to_crops
from omnifuse.processing.media import MediaError, MediaLimits, load_audio, load_image, load_sequence, load_video
from omnifuse.processing.sequence import SequenceSettings, sequence_to_windows
from omnifuse.processing.video import frames_to_tensor

VIDEO_SAMPLING_KEYS = ("num_frames", "fps")


@dataclass
class EncodedMedia:
    values: torch.Tensor  # (units, ...) crops, frames or windows
    mask: torch.Tensor | None  # (units, length) valid frames/samples, windowed kinds only
    expansion: list[int]  # token ids that replace the item's single placeholder


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
    """Frames through the image encoder; each unit's tokens follow a timestamp marker (frame order).

    A unit is one frame, or `temporal_merge` consecutive frames (the clip's last frame repeated up to
    a multiple of it), marked with the time of its first frame.
    """

    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        super().__init__(spec, owner, placeholder_id)
        self.sampling = {k: spec.processing[k] for k in VIDEO_SAMPLING_KEYS if k in spec.processing}
        self.frames_per_unit = spec.temporal_merge

    def encode(self, source: Any, item: str, limits: MediaLimits, tokenizer) -> EncodedMedia:
        frames, times = load_video(source, item=item, limits=limits, **self.sampling)
        pad = (-len(frames)) % self.frames_per_unit
        frames, times = list(frames) + [frames[-1]] * pad, list(times) + [times[-1]] * pad
        expansion: list[int] = []
        for t in times[:: self.frames_per_unit]:
            marker = tokenizer(f"<{t:.1f}s>", add_special_tokens=False, split_special_tokens=True).input_ids
            expansion += marker + [self.placeholder_id] * self.unit_tokens
        return EncodedMedia(frames_to_tensor(frames, self.settings), None, expansion)


class WindowedItems(ABC):
    """Kinds cut into encoder windows with a valid-frame mask; each window's token count follows its mask."""

    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        self.spec, self.owner, self.placeholder_id = spec, owner, placeholder_id

    @abstractmethod
    def windows(self, source: Any, item: str, limits: MediaLimits) -> tuple[torch.Tensor, torch.Tensor]:
        """The medium as (windows, ...) encoder input and a (windows, length) mask of valid frames."""

    def encode(self, source: Any, item: str, limits: MediaLimits, tokenizer) -> EncodedMedia:
        values, mask = self.windows(source, item, limits)
        n_tokens = sum(unit_token_count(self.spec, self.owner, int(valid)) for valid in mask.sum(-1).tolist())
        return EncodedMedia(values, mask, [self.placeholder_id] * n_tokens)


class AudioItems(WindowedItems):
    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        super().__init__(spec, owner, placeholder_id)
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

    def windows(self, source: Any, item: str, limits: MediaLimits) -> tuple[torch.Tensor, torch.Tensor]:
        waveform = load_audio(source, sampling_rate=self.settings.sampling_rate, item=item, limits=limits)
        return audio_to_windows(waveform, self.settings)


class SequenceItems(WindowedItems):
    """A (time, channels) float signal in windows of the encoder's input length (channels x frames)."""

    def __init__(self, spec: ModalitySpec, owner: ModalitySpec, placeholder_id: int):
        super().__init__(spec, owner, placeholder_id)
        probe = probe_encoder(owner.encoder)
        channels_first = len(probe.input_shape) == 2
        defaults = {
            "channels": probe.input_shape[0] if channels_first else 1,
            "window": probe.input_length,
            "channels_first": channels_first,
        }
        self.settings = SequenceSettings.from_options(defaults, spec.processing)

    def windows(self, source: Any, item: str, limits: MediaLimits) -> tuple[torch.Tensor, torch.Tensor]:
        array = load_sequence(source, item=item, limits=limits)
        if array.shape[1] != self.settings.channels:
            raise MediaError(
                "sequence", item, f"has {array.shape[1]} channels; this encoder reads {self.settings.channels}"
            )
        return sequence_to_windows(array, self.settings)


ITEM_PROCESSORS = {"image": ImageItems, "video": VideoItems, "audio": AudioItems, "sequence": SequenceItems}
