"""Per-row routing: which modalities each batch row holds, and what that switches on in the LM.

Two fusion designs depend on it: cross-attention modalities (their media memory, see
`cross_attention.py`) and per-modality LoRA adapters (Phi-4-multimodal's mixture of LoRAs, see
`training/modality_lora.py`). A row holds a modality when its input_ids hold that modality's
placeholder (or marker) token. At prefill the routing is computed from input_ids and stored on the
generation's cache object; decoding steps (one new token, no media) read it back from there.

The LoRA rule: every LoRA adapter named after a modality is active on exactly the rows that hold
that modality (an image+audio row gets both deltas, summed; a text-only row gets none, i.e. the
bare LM, bitwise). It is applied by scaling each adapter's delta with a (batch,) 0/1 row mask.

Example:
    >>> with fusion_routing(model, input_ids, media, past_key_values):  # doctest: +SKIP
    ...     out = model.language_model(inputs_embeds=embeds, past_key_values=past_key_values)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from omnifuse.errors import ModalityError
from omnifuse.modeling.cross_attention import ModalityMemory
from omnifuse.modeling.projectors import merge_frames, projector_output_length
from omnifuse.modeling.tokens import encoder_token_count, projector_layout

CACHE_ATTRIBUTE = "omnifuse_routing"  # set on the transformers Cache object of one generation


@dataclass
class Routing:
    rows: dict[str, torch.Tensor]  # modality -> (batch,) bool
    memory: dict[str, ModalityMemory]  # cross-attention modalities present in the batch


def modality_rows(model, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Modality name -> (batch,) bool: rows whose input_ids hold its placeholder token."""
    return {
        name: (input_ids == spec.placeholder_token_id).any(-1) for name, spec in model.config.modality_specs().items()
    }


def build_memory(model, name: str, input_ids: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None):
    """Encode and project a cross-attention modality's units, grouped per row by its marker tokens."""
    spec, owner = model.config.modality_specs()[name], model.config.encoder_spec_for(name)
    features = merge_frames(model.encoder_for(name)(values.to(model.dtype), mask), spec.temporal_merge)
    valid_in = [None] * features.shape[0] if mask is None else [int(n) for n in mask.sum(-1).tolist()]
    feature_lengths = [encoder_token_count(owner, v) for v in valid_in]
    projected = model.projectors[name](features, torch.tensor(feature_lengths, device=features.device))
    layout = projector_layout(spec.kind)
    lengths = [projector_output_length(spec.projector, n, layout) for n in feature_lengths]
    unit_rows = (input_ids == spec.placeholder_token_id).nonzero()[:, 0].tolist()  # row-major = unit order
    if len(unit_rows) != len(lengths):
        raise ModalityError(
            f"{name}: {len(unit_rows)} marker tokens in input_ids but {len(lengths)} units in "
            f"`{spec.batch_key}`; build the inputs with this model's processor"
        )
    per_row: list[list[torch.Tensor]] = [[] for _ in range(input_ids.shape[0])]
    for unit, (row, length) in enumerate(zip(unit_rows, lengths)):
        per_row[row].append(projected[unit, :length])
    return padded_memory(per_row, projected.shape[-1], projected)


def padded_memory(per_row: list[list[torch.Tensor]], hidden: int, like: torch.Tensor) -> ModalityMemory:
    """Rows of different media lengths -> one zero-padded (batch, longest, hidden) tensor and its masks."""
    rows = [torch.cat(chunks) if chunks else like.new_zeros(0, hidden) for chunks in per_row]
    longest = max(1, max(r.shape[0] for r in rows))
    features = like.new_zeros(len(rows), longest, hidden)
    key_mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=like.device)
    for i, r in enumerate(rows):
        features[i, : r.shape[0]] = r
        key_mask[i, : r.shape[0]] = True
    return ModalityMemory(features, key_mask, key_mask.any(-1))


def compute_routing(model, input_ids: torch.Tensor, media: dict[str, torch.Tensor]) -> Routing:
    rows = modality_rows(model, input_ids)
    memory = {}
    for name, spec in model.config.modality_specs().items():
        if spec.fusion == "cross_attention" and media.get(spec.batch_key) is not None:
            memory[name] = build_memory(model, name, input_ids, media[spec.batch_key], media.get(spec.mask_key))
    return Routing(rows, memory)


def current_routing(model, input_ids, media, past_key_values, decoding: bool) -> Routing | None:
    """This forward's routing: computed at prefill (and stored on the cache), read back while decoding."""
    if decoding:
        return getattr(past_key_values, CACHE_ATTRIBUTE, None)
    if input_ids is None:
        return None
    routing = compute_routing(model, input_ids, media)
    if past_key_values is not None:
        setattr(past_key_values, CACHE_ATTRIBUTE, routing)
    return routing


@contextmanager
def lora_row_masks(language_model: torch.nn.Module, rows: dict[str, torch.Tensor]) -> Iterator[None]:
    """Scale each modality-named LoRA adapter's delta by its (batch,) row mask for the duration."""
    saved = []
    for module in language_model.modules():
        scaling = getattr(module, "scaling", None)
        if not isinstance(scaling, dict) or not hasattr(module, "lora_A"):
            continue
        for adapter, value in list(scaling.items()):
            if adapter in rows:
                saved.append((scaling, adapter, value))
                mask = rows[adapter].to(module.lora_A[adapter].weight.dtype)[:, None, None]
                scaling[adapter] = value * mask
    try:
        yield
    finally:
        for scaling, adapter, value in saved:
            scaling[adapter] = value


def modality_adapters(model) -> set[str]:
    """Names of the LoRA adapters in the LM that are named after a modality (a mixture of LoRAs)."""
    names = set(model.config.modality_specs())
    found = set()
    for module in model.language_model.modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and hasattr(module, "lora_A"):
            found |= set(scaling) & names
    return found


@contextmanager
def fusion_routing(model, input_ids, media, past_key_values, decoding: bool) -> Iterator[None]:
    """Around one LM call: cross-attention memory in place and LoRA adapters masked per row."""
    fusion = model.cross_attention
    adapters = modality_adapters(model)
    if not fusion.blocks and not adapters:
        yield
        return
    routing = current_routing(model, input_ids, media, past_key_values, decoding)
    if routing is None:
        features = ["cross-attention fusion"] if fusion.blocks else []
        features += [f"LoRA adapters per modality {sorted(adapters)}"] if adapters else []
        raise ModalityError(
            f"{' and '.join(features)} need input_ids at prefill (to see which rows hold which modality) and "
            "the same cache object while decoding; this call passes inputs_embeds or another cache. Use "
            "model(input_ids=..., ...) or model.generate(...)"
        )
    fusion.memory = routing.memory
    try:
        with lora_row_masks(model.language_model, routing.rows):
            yield
    finally:
        fusion.memory = None


__all__ = [
    "Routing",
    "build_memory",
    "compute_routing",
    "fusion_routing",
    "lora_row_masks",
    "modality_adapters",
    "modality_rows",
]
