"""The demo's embedded recipe: a small model the built-in benchmark can teach on 2 CPU cores.

What matters for learning fast here (see the README's demo section for the measurements):
- a small ResNet for images and video frames: 32 px -> a 4 x 4 feature map = 16 LM tokens per
  image, merged to 4 per video frame; convolutions tell shapes apart far sooner than a ViT;
- audio frames merged in pairs by a pixel-shuffle projector: short sequences keep steps cheap;
- no pretrained weights exist offline, so the encoders are first warmed up on dense labels the generator
  gives for free (demo/warmup.py); then, LLaVA's recipe, a short align stage (projectors only) and an
  instruction stage ("sft") that trains projectors and LM with the warmed encoders frozen: left trainable,
  they drift under the early gradients of a fresh LM and colour was learned later;
- a high peak learning rate with warmup and cosine decay;
- a grounding head on the LM's first layer, trained at the words that name an object (the benchmark marks
  them as grounded phrases): "is the red circle left of the blue square?" needs the LM to look both up;
  the first head of the first layer is trained to look from each such word at its object's image token
  (`attend_layer`), so the lookup is learned in ~400 steps instead of being discovered late or never.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# LM training: 4,000 steps. The encoder warm-ups (about 20 s), the test split and evaluation (about 10 s) come on
# top: about 10.7 minutes on 2 idle cores, within the 12-minute budget.
DEFAULT_MINUTES = 10.0
# Optimizer steps the demo model makes per minute on 2 idle CPU cores, records generated on the fly with the
# adaptive mix (measured: 3,400 steps in 8.6 min, the whole demo 9 min 4 s; sets --minutes -> steps).
STEPS_PER_MINUTE = 400
ALIGN_FRACTION = 0.05


def demo_model() -> dict[str, Any]:
    """Component configs (fresh weights) and per-modality options."""
    return {
        "text": {
            "model_type": "llama",
            "hidden_size": 96,
            "intermediate_size": 384,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 512,
        },
        # A small ResNet: convolutions see local edges from the first step, so shapes are told apart
        # long before a ViT of the same cost learns to (single-shape scenes: 100% vs 42% after 300 steps).
        "image": {
            "model_type": "resnet",
            "image_size": 32,
            "embedding_size": 32,
            "hidden_sizes": [32, 64],
            "depths": [1, 1],
            "layer_type": "basic",
            "downsample_in_first_stage": False,
        },
        "audio": {
            "model_type": "whisper",
            "d_model": 64,
            "encoder_layers": 2,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 256,
            "decoder_layers": 1,
            "decoder_attention_heads": 4,
            "decoder_ffn_dim": 64,
            "num_mel_bins": 80,
            "max_source_positions": 50,
            "vocab_size": 64,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 1,
        },
        "video": True,
        "projector": {
            "image": {"type": "mlp", "norm": True},
            "video": {"type": "pixel_shuffle", "factor": 2, "norm": True},
            "audio": {"type": "pixel_shuffle", "factor": 2, "norm": True},
        },
        # One unit per clip: each video token holds its 2x2 cells in all 4 frames, so a shape that appears
        # or disappears is visible inside one token (video_appear: 42% -> 100% in experiments/video_probe.py).
        "modality_options": {"video": {"processing": {"num_frames": 4}, "temporal_merge": 4}},
        "tokenizer": {"build": {"vocab_size": 600}},
        # At each word of a question that names an object, the state after the first LM layer must say the
        # object's column and row (4 bins each), and the first layer's first head must look at the object's
        # image token: the lookup the LM never reliably learned from answers alone (README "What mattered").
        "grounding": {"layer": 1, "bins": 4, "weight": 1.0, "attend_layer": 0},
    }


def demo_recipe(output_dir: str | Path, seed: int, minutes: float, modalities: str) -> dict[str, Any]:
    """The recipe `omnifuse demo` trains with (also written to OUT/recipe.yaml).

    The benchmark is generated as training runs (`data.generate`), one fresh record per sample: the
    generator is procedural, so nothing needs to be repeated.
    """
    steps = max(10, int(minutes * STEPS_PER_MINUTE))
    align_steps = max(1, int(steps * ALIGN_FRACTION))
    batch_size = 32
    common = {"batch_size": batch_size, "warmup_ratio": 0.05, "max_grad_norm": 1.0}
    return {
        "model": demo_model(),
        "data": {
            "generate": {"modalities": modalities, "records": steps * batch_size, "seed": seed, "adapt_every": 200}
        },
        "stages": [
            {"name": "align", "max_steps": align_steps, "lr": {"projectors": 1e-3}, **common},
            {
                # Encoders frozen (README "What mattered": colour and the grounding were learned
                # hundreds of steps sooner than with the encoders trained at 5e-4).
                "name": "sft",
                "max_steps": steps - align_steps,
                "lr": {"projectors": 1e-3, "language_model": 1e-3},
                **common,
            },
        ],
        "output_dir": str(output_dir),
        "seed": seed,
        "checkpoints": {"every": 500, "keep": 1},
        "log_every": 10,
    }
