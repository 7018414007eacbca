"""Issue 17 prototype: supervise the lookup of a named object at the word that names it.

At every colour word of a question that names an object in the scene, a linear head on the LM's
hidden state after `layer` decoder layers predicts where that object is: its 4x4 centre cell
(`cell`), its column and row as two 4-way classes (`rowcol`, what the product adopted as
`omnifuse.modeling.grounding`), or its box (`box`, L1). `offset` 1 moves the target to the word after
the colour (the shape), -1 uses both.
"""
from __future__ import annotations

import torch
from torch import nn

from omnifuse.benchmark.common import COLORS


class GroundingHead(nn.Module):
    def __init__(self, hidden: int, tokenizer, grid: int = 4, image_size: int = 32, target: str = "cell"):
        super().__init__()
        self.target, self.size, self.offset = target, image_size, 0
        self.linear = nn.Linear(hidden, {"cell": grid * grid, "box": 4, "rowcol": 2 * grid}[target])
        self.colour_ids = {tokenizer.encode(" " + c, add_special_tokens=False)[-1]: c for c in COLORS}
        self.grid, self.cell = grid, image_size // grid

    def centre_cell(self, bbox) -> int:
        x0, y0, x1, y1 = bbox
        return int((y0 + y1) / 2 // self.cell) * self.grid + int((x0 + x1) / 2 // self.cell)

    def pairs(self, hidden, input_ids, records):
        states, targets = [], []
        for row, record in enumerate(records):
            cells = {s["color"]: self.target_of(s["bbox"]) for s in record.facts.get("shapes", [])}
            for pos, token in enumerate(input_ids[row].tolist()):
                if token in self.colour_ids and self.colour_ids[token] in cells:
                    for off in ((0, 1) if self.offset < 0 else (self.offset,)):
                        states.append(hidden[row, pos + off])
                        targets.append(cells[self.colour_ids[token]])
        return states, targets

    def target_of(self, bbox):
        if self.target in ("cell", "rowcol"):
            return self.centre_cell(bbox)
        return [v / self.size for v in bbox]

    def accuracy(self, hidden, input_ids, records) -> float:
        states, targets = self.pairs(hidden, input_ids, records)
        if not states:
            return float("nan")
        out, gold = self.linear(torch.stack(states)), torch.tensor(targets)
        if self.target == "box":  # centre cell of the predicted box right
            def centre(b):
                row = ((b[:, 1] + b[:, 3]) / 2 * 4).clamp(0, 3).long()
                return row * 4 + ((b[:, 0] + b[:, 2]) / 2 * 4).clamp(0, 3).long()

            return float((centre(out) == centre(gold)).float().mean())
        if self.target == "rowcol":
            g = self.grid
            return float(((out[:, :g].argmax(-1) == gold // g) & (out[:, g:].argmax(-1) == gold % g)).float().mean())
        return float((out.argmax(-1) == gold).float().mean())

    def loss(self, hidden: torch.Tensor, input_ids: torch.Tensor, records) -> torch.Tensor:
        states, targets = self.pairs(hidden, input_ids, records)
        if not states:
            return hidden.sum() * 0
        out, gold = self.linear(torch.stack(states)), torch.tensor(targets)
        if self.target == "box":
            return nn.functional.l1_loss(out, gold) * 4
        if self.target == "rowcol":
            g = self.grid
            rows = nn.functional.cross_entropy(out[:, :g], gold // g)
            return rows + nn.functional.cross_entropy(out[:, g:], gold % g)
        return nn.functional.cross_entropy(out, gold)
