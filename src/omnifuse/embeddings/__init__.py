"""Multimodal embeddings: pooling heads, the contrastive stage, embed / classify, a vector index, RAG.

Imports are lazy (the recipe schema imports `settings` from here).

Example:
    >>> from omnifuse.embeddings.embed import Embedder  # doctest: +SKIP
    >>> Embedder.from_folder("runs/contrastive").embed(["a red circle."])  # doctest: +SKIP
"""
