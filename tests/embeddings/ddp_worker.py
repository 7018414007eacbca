"""Run under torchrun (2 processes, gloo): this rank's half of a contrastive batch through DDP.

For each loss (siglip, clip) rank 0 saves the summed loss and the averaged gradients to OUT, for
comparison with one process.
Usage: python -m torch.distributed.run --nproc_per_node 2 tests/embeddings/ddp_worker.py PAIRS.jsonl OUT.pt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.embeddings.pairs import ContrastiveCollator
from omnifuse.embeddings.settings import ContrastiveSection
from omnifuse.embeddings.stage import ContrastiveModel, heads_for
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer

BATCH = 8


def build(pairs: Path, loss: str = "siglip") -> tuple[ContrastiveModel, dict]:
    """The same model, heads and global batch in every process (seeded)."""
    torch.manual_seed(0)
    tokenizer = build_bpe_tokenizer(["a red circle and a blue square.", "a single low tone."], vocab_size=300)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config("llama", vocab_size=len(tokenizer), layers=1),
        image=tiny_vision_config("siglip_vision_model", layers=1),
        audio=tiny_audio_config("whisper", layers=1),
        tokenizer=tokenizer,
    ).eval()
    processor = OmniProcessor.from_model_config(model.config, tokenizer)
    heads = heads_for(model, ContrastiveSection(loss=loss), model.config.text_config.hidden_size)
    records = [json.loads(line) for line in pairs.read_text().splitlines()[:BATCH]]
    for record in records:
        part = record["messages"][0]["content"][0]
        part["path"] = str(pairs.parent / part["path"])
    batch = ContrastiveCollator(processor)(records)
    return ContrastiveModel(model, processor, heads), batch


def one_loss(pairs: Path, loss_kind: str) -> dict | None:
    rank, world = dist.get_rank(), dist.get_world_size()
    model, batch = build(pairs, loss_kind)
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss = ddp(batch["items"][share], batch["texts"][share]) * world  # DDP averages: scale back to a sum
    loss.backward()
    total = loss.detach() / world
    dist.all_reduce(total)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": float(total), "grads": grads}


def main() -> None:
    pairs, out = Path(sys.argv[1]), Path(sys.argv[2])
    dist.init_process_group("gloo")
    results = {kind: one_loss(pairs, kind) for kind in ("siglip", "clip")}
    if dist.get_rank() == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
