"""OmniProcessor: messages -> model inputs (token ids with expanded placeholders, media tensors, labels).

Example:
    >>> processor = OmniProcessor.from_model_config(model.config, tokenizer)
    >>> inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
    ...                                        return_dict=True, return_tensors="pt")
    >>> model.generate(**inputs, max_new_tokens=16)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, BatchFeature

from omnifuse.config import ModalitySpec, OmniConfig, encoder_owner, resolve_modalities
from omnifuse.errors import FolderError, ModalityError
from omnifuse.processing.chat import IGNORE_INDEX, Placeholder, render_segments, tokenize_segments
from omnifuse.processing.grounding import GROUNDING_KEY
from omnifuse.processing.media import MediaError, MediaLimits
from omnifuse.processing.modalities import ITEM_PROCESSORS, EncodedMedia
from omnifuse.processing.parts import part_modality, part_source
from omnifuse.safety.limits import check_messages, check_prompt_text, check_prompt_tokens, max_positions_of
from omnifuse.safety.model_files import media_limits_from_json, positions_in_folder

PROCESSOR_FILE = "omnifuse_processor.json"


@dataclass
class EncodedSample:
    """One conversation, tokenized: ids and labels of equal length, media per batch key (in order)."""

    input_ids: list[int]
    labels: list[int]
    media: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    regions: dict[int, tuple[float, float]] = field(default_factory=dict)  # token index -> grounded box centre


def collate_grounding(samples: list[EncodedSample], width: int, side: str) -> torch.Tensor:
    """(B, width, 2) box centres (x, y) at each grounded phrase's last token, -1 elsewhere."""
    out = torch.full((len(samples), width, 2), -1.0)
    for row, sample in enumerate(samples):
        shift = width - len(sample.input_ids) if side == "left" else 0
        for index, centre in sample.regions.items():
            out[row, index + shift] = torch.tensor(centre)
    return out


class OmniProcessor:
    """Tokenizer + one item processor per named modality + chat template, saved together in a folder."""

    def __init__(self, tokenizer, modalities: dict[str, dict], limits: MediaLimits | None = None):
        self.tokenizer = tokenizer
        self.specs: dict[str, ModalitySpec] = resolve_modalities(modalities)
        self.limits = limits or MediaLimits()
        self.max_positions: int | None = None  # the language model's positions: prompts longer are refused
        self.items = {}
        for name, spec in self.specs.items():
            placeholder_id = tokenizer.convert_tokens_to_ids(spec.placeholder)
            if placeholder_id != spec.placeholder_token_id:
                raise ModalityError(
                    f"{name}: tokenizer maps {spec.placeholder!r} to {placeholder_id}, the model expects "
                    f"{spec.placeholder_token_id}; build the model with this tokenizer (from_components(tokenizer=...))"
                )
            self.items[name] = ITEM_PROCESSORS[spec.kind](spec, encoder_owner(self.specs, name), placeholder_id)

    @classmethod
    def from_model_config(cls, config: OmniConfig, tokenizer, **kwargs) -> OmniProcessor:
        processor = cls(tokenizer, config.modalities, **kwargs)
        processor.max_positions = max_positions_of(config.text_config)
        return processor

    @property
    def modalities(self) -> dict[str, dict]:
        """name -> spec dict, as saved in omnifuse_processor.json and in the model's config."""
        return {name: spec.to_dict() for name, spec in self.specs.items()}

    def modality_for(self, part_type: str, item: str = "") -> str:
        """The modality a content part type fills: its name (`depth`, `image_url` -> image, `input_audio`
        -> audio), or a kind that exactly one modality has (`image` when the only image modality is `camera`)."""
        name = part_modality(part_type)
        if name in self.specs:
            return name
        of_kind = [n for n, spec in self.specs.items() if spec.kind == name]
        if len(of_kind) == 1:
            return of_kind[0]
        where = f" ({item})" if item else ""
        known = sorted(self.specs)
        raise ModalityError(f"{part_type}{where}: this model has no {name!r} modality (modalities: {known})")

    def placeholder(self, part_type: str, item: str = "") -> Placeholder:
        name = self.modality_for(part_type, item)
        return Placeholder(name, self.specs[name].placeholder, self.items[name].placeholder_id)

    # -- encoding --
    def encode_conversation(self, messages: list[dict], add_generation_prompt: bool = False) -> EncodedSample:
        """Tokenize one conversation, expanding each placeholder to its item's exact token count."""
        check_messages(messages, self.limits.max_text_chars)
        segments, parts = render_segments(self.tokenizer, messages, add_generation_prompt, self.placeholder)
        ids, labels, regions = tokenize_segments(self.tokenizer, segments)
        encoded = [self._encode_part(p.modality, p.part, p.item) for p in parts]
        return self._expand(ids, labels, [p.modality for p in parts], encoded, regions)

    def _encode_part(self, name: str, part: dict, item: str) -> EncodedMedia:
        try:
            source = part_source(part)
        except ValueError as err:  # a part with no usable source field
            raise MediaError(name, item, str(err)) from err
        try:
            return self.items[name].encode(source, item, self.limits, self.tokenizer)
        except MediaError as err:
            raise MediaError(name, item, err.reason) from err  # named after the modality, not its kind

    def _expand(
        self,
        ids: list[int],
        labels: list[int],
        names: list[str],
        encoded: list[EncodedMedia],
        regions: dict[int, tuple[float, float]] | None = None,
    ) -> EncodedSample:
        by_id = {proc.placeholder_id: name for name, proc in self.items.items()}
        queues = {name: [e for k, e in zip(names, encoded) if k == name] for name in self.items}
        found = {name: sum(1 for t in ids if by_id.get(t) == name) for name in self.items}
        for name in self.items:
            if found[name] != len(queues[name]):
                raise ValueError(
                    f"{name}: the rendered prompt has {found[name]} placeholders but {len(queues[name])} {name} items"
                )
        sample = EncodedSample([], [])
        for index, (token, label) in enumerate(zip(ids, labels)):
            name = by_id.get(token)
            if name is None:
                if regions and index in regions:
                    sample.regions[len(sample.input_ids)] = regions[index]
                sample.input_ids.append(token)
                sample.labels.append(label)
                continue
            media = queues[name].pop(0)
            sample.input_ids += media.expansion
            sample.labels += [IGNORE_INDEX] * len(media.expansion)
            self._add_media(sample, name, media)
        return sample

    def _add_media(self, sample: EncodedSample, name: str, media: EncodedMedia) -> None:
        spec = self.specs[name]
        sample.media.setdefault(spec.batch_key, []).append(media.values)
        if media.mask is not None:
            sample.media.setdefault(spec.mask_key, []).append(media.mask)

    # -- batching --
    def collate(
        self, samples: list[EncodedSample], padding_side: str | None = None, with_labels: bool = False
    ) -> BatchFeature:
        """Pad to the longest sample; media of all samples are concatenated along the unit axis."""
        side = padding_side or self.tokenizer.padding_side
        width = max(len(s.input_ids) for s in samples)
        pad_id = self.tokenizer.pad_token_id
        rows, masks, labels = [], [], []
        for s in samples:
            pad = width - len(s.input_ids)
            before, after = (pad, 0) if side == "left" else (0, pad)
            rows.append([pad_id] * before + s.input_ids + [pad_id] * after)
            masks.append([0] * before + [1] * len(s.input_ids) + [0] * after)
            labels.append([IGNORE_INDEX] * before + s.labels + [IGNORE_INDEX] * after)
        data: dict[str, Any] = {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks)}
        if with_labels:
            data["labels"] = torch.tensor(labels)
        if with_labels and any(s.regions for s in samples):
            data[GROUNDING_KEY] = collate_grounding(samples, width, side)
        keys = sorted({key for s in samples for key in s.media})
        for key in keys:
            data[key] = torch.cat([t for s in samples for t in s.media.get(key, [])], dim=0)
        return BatchFeature(data=data)

    def apply_chat_template(
        self,
        conversation: list[dict] | list[list[dict]],
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        return_dict: bool = True,
        return_tensors: str | None = "pt",
        padding_side: str | None = None,
        return_labels: bool = False,
        **kwargs,
    ):
        """transformers' call: one conversation or a batch of them -> input_ids, attention_mask, media tensors.

        `return_labels=True` adds `labels` where only assistant tokens (and their turn-end) are supervised.
        """
        batch = conversation if conversation and isinstance(conversation[0], list) else [conversation]
        if not tokenize:
            rendered = [self.render(c, add_generation_prompt) for c in batch]
            return rendered if batch is conversation else rendered[0]
        if return_tensors not in ("pt", None):
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}")
        samples = [self.encode_conversation(c, add_generation_prompt) for c in batch]
        for sample in samples:
            check_prompt_tokens(len(sample.input_ids), self.max_positions)
        out = self.collate(samples, padding_side=padding_side, with_labels=return_labels)
        return out if return_dict else out["input_ids"]

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        """The prompt as text, one placeholder per media part (unexpanded), for display and debugging."""
        segments, _ = render_segments(self.tokenizer, messages, add_generation_prompt, self.placeholder)
        return "".join(segment.text for segment in segments)

    def __call__(
        self, text: str | list[str], images=None, audios=None, videos=None, padding_side=None, **media
    ) -> BatchFeature:
        """LLaVA-style call: prompt strings holding placeholders, plus media lists in placeholder order.

        `images`, `audios`, `videos` fill the modalities of those kinds; any other modality by its name
        (`processor(text, images=[rgb], depth=[depth_map])`).
        """
        texts = [text] if isinstance(text, str) else list(text)
        given = {"image": images, "audio": audios, "video": videos} | media
        pools = {self.modality_for(kind): list(items) for kind, items in given.items() if items is not None}
        by_id = {proc.placeholder_id: name for name, proc in self.items.items()}
        samples = []
        for t in texts:
            check_prompt_text(t, self.limits.max_text_chars)
            ids = self.tokenizer(t, add_special_tokens=False).input_ids
            names = [by_id[token] for token in ids if token in by_id]
            encoded = []
            for n, name in enumerate(names):
                if not pools.get(name):
                    raise ModalityError(f"{name}: the prompt has more placeholders than {name} items were given")
                encoded.append(self._encode_part(name, {"type": name, name: pools[name].pop(0)}, f"{name} {n}"))
            samples.append(self._expand(ids, [IGNORE_INDEX] * len(ids), names, encoded))
            check_prompt_tokens(len(samples[-1].input_ids), self.max_positions)
        leftover = {k: len(v) for k, v in pools.items() if v}
        if leftover:
            raise ModalityError(f"more media than placeholders in the prompts: {leftover} left over")
        return self.collate(samples, padding_side=padding_side)

    # -- decoding --
    def batch_decode(self, ids, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(ids, **kwargs)

    def decode(self, ids, **kwargs) -> str:
        return self.tokenizer.decode(ids, **kwargs)

    # -- persistence --
    def save_pretrained(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        state = {
            "processor_class": type(self).__name__,
            "modalities": self.modalities,
            "limits": asdict(self.limits),
        }
        (folder / PROCESSOR_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> OmniProcessor:
        folder = Path(folder)
        path = folder / PROCESSOR_FILE
        if not path.exists():
            raise FolderError(f"{path} not found: save the processor with OmniProcessor.save_pretrained")
        state = json.loads(path.read_text())
        tokenizer = AutoTokenizer.from_pretrained(folder)
        processor = cls(tokenizer, state["modalities"], limits=media_limits_from_json(state.get("limits"), str(path)))
        processor.max_positions = positions_in_folder(folder)
        return processor
