"""omnifuse.training: recipes, staged training, checkpoints, LoRA, distributed."""
