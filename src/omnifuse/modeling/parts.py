"""Named model parts (each encoder, each projector, the LM): freezing and parameter counts.

Training stages are described in these names, e.g. align = only `projector.*` trains.

Example:
    >>> model.freeze("encoders", "language_model")   # groups or exact parts like "encoder.image"
    >>> model.parameter_counts()["projector.image"]
    {'total': 8320, 'trainable': 8320}
"""

from __future__ import annotations

from torch import nn

from omnifuse.errors import ModalityError

GROUPS = {"encoders": "encoder.", "projectors": "projector.", "cross_attention": "cross_attention."}


class PartsMixin:
    """Mixed into the composite model; expects `encoders`, `projectors` and `language_model` attributes."""

    def part_modules(self) -> dict[str, nn.Module]:
        parts = {f"encoder.{name}": module for name, module in self.encoders.items()}
        parts |= {f"projector.{name}": module for name, module in self.projectors.items()}
        parts |= {f"cross_attention.{name}": module for name, module in self.cross_attention.blocks.items()}
        parts["language_model"] = self.language_model
        if self.grounding_head is not None:  # trained with the LM (a head on its hidden states)
            parts["grounding_head"] = self.grounding_head
        return parts

    def select_parts(self, *names: str) -> dict[str, nn.Module]:
        """Parts by exact name ("encoder.depth") or group ("encoders"); an unknown name is an error."""
        parts = self.part_modules()
        selected = {}
        for name in names:
            prefix = GROUPS.get(name)
            matches = {k: v for k, v in parts.items() if (k.startswith(prefix) if prefix else k == name)}
            if not matches and name not in GROUPS:
                raise ModalityError(f"unknown model part {name!r}; parts: {sorted(parts)}, groups: {sorted(GROUPS)}")
            selected |= matches
        return selected

    def set_trainable(self, *names: str, trainable: bool = True) -> None:
        for module in self.select_parts(*names).values():
            module.requires_grad_(trainable)

    def freeze(self, *names: str) -> None:
        self.set_trainable(*names, trainable=False)

    def unfreeze(self, *names: str) -> None:
        self.set_trainable(*names, trainable=True)

    def train(self, mode: bool = True):
        """`nn.Module.train`, except that an encoder with nothing trainable stays in eval mode.

        Frozen means frozen: a frozen CNN encoder keeps its BatchNorm running statistics and runs
        without dropout. A frozen LM stays in train mode: gradients still flow through it to the
        projectors, and transformers only applies gradient checkpointing in train mode.
        """
        super().train(mode)
        if mode:
            for module in self.encoders.values():
                if not any(param.requires_grad for param in module.parameters()):
                    module.eval()
        return self

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Total and trainable parameters per part (shared tensors counted once, under their first part)."""
        seen: set[int] = set()
        counts = {}
        for name, module in self.part_modules().items():
            total = trainable = 0
            for param in module.parameters():
                if id(param) in seen:
                    continue
                seen.add(id(param))
                total += param.numel()
                trainable += param.numel() if param.requires_grad else 0
            counts[name] = {"total": total, "trainable": trainable}
        return counts
