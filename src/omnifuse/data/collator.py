"""MultimodalCollator: records -> one training batch, media decoded here (so in DataLoader workers).

Loss falls only on assistant tokens and the turn-end that closes them (the processor's labels);
media placeholders, prompts, template scaffolding and padding are never targets. Two modes:

- padding: one sample per row, right-padded, 2D attention mask;
- packing: whole samples first-fit into rows of `pack_length`, positions restarting per sample and a
  block-diagonal causal 4D mask (sdpa: bool, eager: additive float), or for flash attention one
  padding-free row whose position_ids tell transformers' varlen kernel where samples start.

Truncation cuts text from the end only: a sample keeps all of its media or is dropped (and counted
in `stats`), and a sample left without any supervised token is dropped too.

Example:
    >>> collator = MultimodalCollator(processor, max_length=2048, packing=True)  # doctest: +SKIP
    >>> loader = DataLoader(MessagesDataset.from_path("train.jsonl"), batch_size=8,
    ...                     collate_fn=collator, num_workers=4)  # doctest: +SKIP
    >>> batch = next(iter(loader))  # doctest: +SKIP
    >>> if not is_empty_batch(batch): model(**batch).loss.backward()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from omnifuse.data.packing import (
    PADDING_SAMPLE,
    additive_mask,
    block_causal_mask,
    flatten_rows,
    pack_samples,
    per_sample_loss,
)
from omnifuse.processing.chat import IGNORE_INDEX
from omnifuse.processing.grounding import GROUNDING_KEY
from omnifuse.processing.media import MediaError
from omnifuse.processing.processor import EncodedSample, OmniProcessor

__all__ = ["MultimodalCollator", "empty_batch", "is_empty_batch", "per_sample_loss"]

logger = logging.getLogger(__name__)

MASKED_ATTENTION = ("sdpa", "eager")
VARLEN_PREFIX = "flash_attention"  # flash_attention_2 / _3: samples separated by position_ids alone
STAT_KEYS = ("samples", "dropped_too_long", "truncated", "tokens", "supervised_tokens")


@dataclass
class _Kept:
    index: int  # position in the incoming batch
    sample: EncodedSample


def empty_batch() -> dict[str, torch.Tensor]:
    """The batch returned when every sample was dropped: tensors of shape (0, 0); skip it (see is_empty_batch)."""
    empty = torch.empty(0, 0, dtype=torch.long)
    return {"input_ids": empty, "attention_mask": empty.clone(), "labels": empty.clone()}


def is_empty_batch(batch: dict[str, torch.Tensor]) -> bool:
    """True for the marker batch of a step whose samples were all dropped by truncation.

    Example:
        >>> is_empty_batch(empty_batch())
        True
    """
    return batch["input_ids"].numel() == 0


class MultimodalCollator:
    """Turns a list of records (or message lists) into model inputs, decoding media lazily.

    Args:
        processor: the model's OmniProcessor (tokenizer, chat template, media processors).
        max_length: longest sample in tokens; longer ones are cut at the end (text only) or dropped.
        packing: pack several samples per row instead of padding each to the longest.
        pack_length: row capacity when packing (default: `max_length`); also caps sample length.
        attn_implementation: the LM's attention ("sdpa", "eager" or "flash_attention_2"); it picks
            the packed mask format: sdpa a bool 4D mask, eager an additive float32 4D mask, flash
            attention one padding-free row with position_ids and a 2D mask of ones.
        return_sample_index: add `sample_index` (rows, L): each token's index in the incoming batch,
            -1 on padding; pop it before calling the model (it is for `per_sample_loss`).

    Output keys: `input_ids`, `attention_mask`, `labels`, the media tensors under the processor's
    keys (`pixel_values`, `input_features` + `_mask`, ...; all samples' items concatenated in row
    order) and, when packing, `position_ids`. When every sample was dropped the result is
    `empty_batch()` (shape (0, 0) tensors), which `is_empty_batch` recognises.

    `stats` counts, over this collator's lifetime: `samples` seen, `dropped_too_long`, `truncated`,
    kept `tokens` and `supervised_tokens` (targets of the shifted loss). In DataLoader workers each
    worker updates its own copy; drops are also logged with the record's source.

    Example:
        >>> collator = MultimodalCollator(processor, max_length=512)  # doctest: +SKIP
        >>> batch = collator([record_a, record_b])  # doctest: +SKIP
        >>> batch["input_ids"].shape, batch["pixel_values"].shape  # doctest: +SKIP
        (torch.Size([2, 301]), torch.Size([3, 3, 224, 224]))
    """

    def __init__(
        self,
        processor: OmniProcessor,
        max_length: int | None = None,
        packing: bool = False,
        pack_length: int | None = None,
        attn_implementation: str = "sdpa",
        return_sample_index: bool = False,
        cache_encoded: bool = False,
    ) -> None:
        if attn_implementation not in MASKED_ATTENTION and not attn_implementation.startswith(VARLEN_PREFIX):
            raise ValueError(
                f"attn_implementation {attn_implementation!r} is not supported for batching; "
                f"use one of {MASKED_ATTENTION} or a flash_attention_* implementation"
            )
        self.processor = processor
        self.packing = packing
        self.pack_length = (pack_length or max_length) if packing else None
        if packing and self.pack_length is None:
            raise ValueError("packing needs a row length: pass pack_length or max_length")
        limits = [n for n in (max_length, self.pack_length) if n is not None]
        if any(n < 2 for n in limits):
            raise ValueError(f"max_length and pack_length must be at least 2 tokens, got {limits}")
        self.limit = min(limits) if limits else None
        self.attn_implementation = attn_implementation
        self.return_sample_index = return_sample_index
        self.placeholder_ids = {spec.placeholder_token_id for spec in processor.specs.values()}
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        # Small datasets: decode each record's media once, keyed by its source (file:line), and reuse it.
        self.cache: dict[str, EncodedSample] | None = {} if cache_encoded else None

    def __call__(self, batch: list[Any]) -> dict[str, torch.Tensor]:
        kept: list[_Kept] = []
        for index, item in enumerate(batch):
            messages, source = record_messages(item, index)
            self.stats["samples"] += 1
            fitted = self.fit(self.encode(messages, source), source)
            if fitted is not None:
                kept.append(_Kept(index, fitted))
        if not kept:
            return empty_batch()
        for k in kept:
            self.stats["tokens"] += len(k.sample.input_ids)
            self.stats["supervised_tokens"] += sum(label != IGNORE_INDEX for label in k.sample.labels[1:])
        out = self._pack(kept) if self.packing else self._pad(kept)
        if not self.return_sample_index:
            out.pop("sample_index")
        return out

    def encode(self, messages: list[dict], source: str) -> EncodedSample:
        """Tokenize and decode the media of one conversation; errors name the record's source."""
        if self.cache is not None and source in self.cache:
            return self.cache[source]
        sample = self._encode_uncached(messages, source)
        if self.cache is not None:
            self.cache[source] = sample
        return sample

    def _encode_uncached(self, messages: list[dict], source: str) -> EncodedSample:
        try:
            return self.processor.encode_conversation(messages)
        except MediaError as err:
            # Re-raised as a MediaError (which pickles by its fields) so the source survives DataLoader workers.
            raise MediaError(err.kind, f"{source}, {err.item}" if err.item else source, err.reason) from err
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err

    def fit(self, sample: EncodedSample, source: str = "") -> EncodedSample | None:
        """The sample cut to the length limit, or None (counted and logged) when it cannot be cut safely.

        Only text after the sample's last media token is cut, so every media span (placeholders and a
        video's timestamp markers between frames) stays whole; the cut must leave a supervised token.
        """
        if self.limit is None or len(sample.input_ids) <= self.limit:
            return sample
        media_end = max((i + 1 for i, t in enumerate(sample.input_ids) if t in self.placeholder_ids), default=0)
        if media_end > self.limit:
            return self._drop(source, f"its media run to token {media_end}, past the limit of {self.limit}")
        labels = sample.labels[: self.limit]
        if all(label == IGNORE_INDEX for label in labels[1:]):
            return self._drop(source, f"no assistant token would be left within {self.limit} tokens")
        self.stats["truncated"] += 1
        regions = {token: centre for token, centre in sample.regions.items() if token < self.limit}
        return EncodedSample(sample.input_ids[: self.limit], labels, sample.media, regions)

    def _drop(self, source: str, reason: str) -> None:
        self.stats["dropped_too_long"] += 1
        logger.warning("dropped %s (%d tokens allowed): %s", source or "a sample", self.limit, reason)
        return None

    def _pad(self, kept: list[_Kept]) -> dict[str, torch.Tensor]:
        out = dict(self.processor.collate([k.sample for k in kept], padding_side="right", with_labels=True).data)
        indices = torch.tensor([k.index for k in kept])[:, None]
        out["sample_index"] = torch.where(out["attention_mask"].bool(), indices, PADDING_SAMPLE)
        return out

    def _pack(self, kept: list[_Kept]) -> dict[str, torch.Tensor]:
        by_index = {k.index: k.sample for k in kept}
        rows = pack_samples([k.sample for k in kept], [k.index for k in kept], self.pack_length, self.pad_id)
        if self.attn_implementation.startswith(VARLEN_PREFIX):
            out = flatten_rows(rows)
        else:
            allowed = block_causal_mask(rows.segment_ids)
            mask = allowed if self.attn_implementation == "sdpa" else additive_mask(allowed)
            out = {
                "input_ids": rows.input_ids,
                "attention_mask": mask,
                "labels": rows.labels,
                "position_ids": rows.position_ids,
                "sample_index": rows.sample_index,
            }
            if rows.grounding_xy is not None:
                out[GROUNDING_KEY] = rows.grounding_xy
        # Media follow the row-major order of their placeholders, which is how the model scatters them.
        out.update(concat_media([by_index[i] for i in rows.order]))
        return out


def concat_media(samples: list[EncodedSample]) -> dict[str, torch.Tensor]:
    """Each media key's items of all samples, concatenated along the unit axis in sample order."""
    keys = sorted({key for s in samples for key in s.media})
    return {key: torch.cat([t for s in samples for t in s.media.get(key, [])], dim=0) for key in keys}


def record_messages(item: Any, index: int) -> tuple[list[dict], str]:
    """(messages, source) of a batch item: a Record, a messages list or a dict with "messages"."""
    if isinstance(item, list):
        return item, f"batch item {index}"
    if isinstance(item, dict) and isinstance(item.get("messages"), list):
        return item["messages"], str(item.get("source") or f"batch item {index}")
    messages = getattr(item, "messages", None)
    if not isinstance(messages, list):
        raise TypeError(
            f"batch item {index}: expected a Record, a list of messages or a dict with 'messages', "
            f"got {type(item).__name__}"
        )
    return messages, str(getattr(item, "source", "") or f"batch item {index}")
