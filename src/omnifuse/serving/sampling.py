"""Per-request sampling settings and the next-token choice for one row of the running batch.

Example:
    >>> params = SamplingParams(max_tokens=16, temperature=0.0)   # greedy
    >>> next_token(logits_row, params, params.generator())
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SamplingParams:
    """What OpenAI's chat API lets a request choose; temperature 0 means greedy."""

    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)

    def generator(self) -> torch.Generator:
        """A private random stream: seeded requests repeat, and no request perturbs another's draws."""
        seed = self.seed if self.seed is not None else random.SystemRandom().randrange(2**63)
        return torch.Generator().manual_seed(seed)


def next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator) -> int:
    """Greedy for temperature 0, else temperature-scaled nucleus (top_p) sampling from `logits` (vocab,)."""
    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
