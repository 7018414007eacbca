"""Issue 17 prototype: supervise the lookup of a named object at the word that names it.

At every colour word of a question that names an object in the scene, a linear head on the LM's
hidden state after `layer` decoder layers predicts the 4x4 cell of that object's centre.
"""
from __future__ import annotations

import torch
from torch import nn

from omnifuse.benchmark.common import COLORS


class GroundingHead(nn.Module):
    def __init__(self, hidden: int, tokenizer, grid: int = 4, image_size: int = 32):
        super().__init__()
        self.linear = nn.Linear(hidden, grid * grid)
        self.colour_ids = {tokenizer.encode(" " + c, add_special_tokens=False)[-1]: c for c in COLORS}
        self.grid, self.cell = grid, image_size // grid

    def centre_cell(self, bbox) -> int:
        x0, y0, x1, y1 = bbox
        return int((y0 + y1) / 2 // self.cell) * self.grid + int((x0 + x1) / 2 // self.cell)

    def loss(self, hidden: torch.Tensor, input_ids: torch.Tensor, records) -> torch.Tensor:
        states, targets = [], []
        for row, record in enumerate(records):
            cells = {s["color"]: self.centre_cell(s["bbox"]) for s in record.facts.get("shapes", [])}
            for pos, token in enumerate(input_ids[row].tolist()):
                if token in self.colour_ids and self.colour_ids[token] in cells:
                    states.append(hidden[row, pos])
                    targets.append(cells[self.colour_ids[token]])
        if not states:
            return hidden.sum() * 0
        return nn.functional.cross_entropy(self.linear(torch.stack(states)), torch.tensor(targets))
