"""An adaptive question-type mix for the generated benchmark: spend samples where the model is still wrong.

Uniform round-robin spends as many samples on a type the model answers perfectly (pitch, sums) as
on one it has not learned yet (binding a colour to a named shape). `TypeMixture` instead draws the
type of each new record with weight `floor + (1 - accuracy)`, where accuracy is the model's greedy
exact match on a few fresh probe records per type, measured every `adapt_every` steps and smoothed.

Example:
    >>> mixture = TypeMixture(["audio_pitch", "image_color"], floor=0.1)
    >>> mixture.update({"audio_pitch": 1.0, "image_color": 0.0})
    >>> [round(p, 3) for p in mixture.probabilities()]
    [0.083, 0.917]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from omnifuse.modeling.grounding import grounding_hits, lookup_hits
from omnifuse.processing.grounding import GROUNDING_KEY

# Weight of a type the model already answers perfectly: it keeps being seen, so it is not forgotten.
FLOOR = 0.1
# New accuracy figures are averaged with the old ones (a probe of 16 records per type is noisy).
SMOOTHING = 0.5


class TypeMixture:
    """Per question type: a smoothed probe accuracy (None until measured) and the sampling weight it gives."""

    def __init__(self, names: Sequence[str], floor: float = FLOOR) -> None:
        self.names = list(names)
        self.floor = floor
        self.accuracy: dict[str, float | None] = dict.fromkeys(self.names)

    def update(self, measured: dict[str, float]) -> None:
        for name, value in measured.items():
            old = self.accuracy[name]
            self.accuracy[name] = value if old is None else SMOOTHING * old + (1 - SMOOTHING) * value

    def probabilities(self) -> np.ndarray:
        """Sampling probability per type, in `names` order (uniform until a type is measured)."""
        weights = np.array([self.floor + 1 - (a if a is not None else 0.0) for a in self.accuracy.values()])
        return weights / weights.sum()

    def state_dict(self) -> dict[str, float | None]:
        return dict(self.accuracy)

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        unknown = set(state) - set(self.names)
        if unknown:
            raise ValueError(f"mixture state names question types this dataset lacks: {sorted(unknown)}")
        self.accuracy.update(state)


def _grounded_hits(model, input_ids: torch.Tensor, out, targets: torch.Tensor) -> tuple[int, int, int | None]:
    settings = model.grounding_settings
    right, total = grounding_hits(model.grounding_head, settings, out.hidden_states, targets)
    if settings.attend_layer is None:
        return right, total, None
    return right, total, lookup_hits(settings, out.attentions, input_ids, model.image_placeholder_id(), targets)


@torch.no_grad()
def exact_match_by_type(
    model, processor, records: Sequence, names: Sequence[str], grounded: list[tuple[int, int, int | None]] | None = None
) -> dict[str, float]:
    """Greedy exact match per type, teacher-forced: every answer token (and the turn end) is the argmax.

    `records` are (question type, messages) pairs; one forward pass in chunks of 64. With a `grounded`
    list and a model with a grounding head, each chunk's grounded words are appended to it as (right,
    total, looked): `looked` counts the words whose lookup looks at the object, None without `attend_layer`.
    """
    was_training = model.training
    model.eval()
    hits: dict[str, list[bool]] = {name: [] for name in names}
    head = getattr(model, "grounding_head", None) if grounded is not None else None
    for start in range(0, len(records), 64):
        chunk = records[start : start + 64]
        batch = processor.apply_chat_template([messages for _, messages in chunk], return_labels=True)
        labels = batch.pop("labels")[:, 1:]
        targets = batch.pop(GROUNDING_KEY, None)
        grounding = head is not None and targets is not None
        attend = grounding and model.grounding_settings.attend_layer is not None
        out = model(**batch, output_hidden_states=grounding, output_attentions=attend)
        if getattr(out, "hidden_states", None) is not None:
            grounded.append(_grounded_hits(model, batch["input_ids"], out, targets))
        predicted = out.logits[:, :-1].argmax(-1)
        right = ((predicted == labels) | (labels == -100)).all(-1)
        for (name, _), ok in zip(chunk, right.tolist()):
            hits[name].append(ok)
    model.train(was_training)
    return {name: float(np.mean(values)) for name, values in hits.items() if values}
