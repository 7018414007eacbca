"""Retrieval-augmented chat: the top-k index items for a question, placed in the prompt, cited after.

Media hits of a modality the chat model reads become content parts (`{"type": "image", "path": ...}`),
numbered in a short context block with their captions; other hits enter as text. The answer is
followed by a `Sources:` line naming every item that was put in the prompt.

Example:
    >>> hits = search_index("runs/idx", "a red circle", k=3)  # doctest: +SKIP
    >>> messages = rag_messages("Which shape is red?", hits, {"image", "audio"})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

Hit = dict[str, Any]


def rag_context(question: str, hits: list[Hit], modalities: set[str]) -> tuple[str, list[tuple[str, str]]]:
    """(prompt text, [(modality, path)] media parts in order) for the question and its hits."""
    lines, media = [], []
    for n, hit in enumerate(hits, 1):
        caption = hit.get("text") or ""
        if hit.get("kind") in modalities and hit.get("path"):
            media.append((hit["kind"], hit["path"]))
            lines.append(f"[{n}] {hit['kind']} {len(media)} of the attached media ({hit['id']}): {caption}")
        else:
            lines.append(f"[{n}] text ({hit.get('id')}): {caption}")
    prompt = "Retrieved items:\n" + "\n".join(lines)
    prompt += f"\nAnswer with the help of these items and cite them by number, like [1].\nQuestion: {question}"
    return prompt, media


def rag_messages(question: str, hits: list[Hit], modalities: set[str]) -> list[dict]:
    """One user turn: the retrieved media parts, then the context block and the question."""
    prompt, media = rag_context(question, hits, modalities)
    parts = [{"type": kind, "path": path} for kind, path in media]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}]


def citations(hits: list[Hit]) -> str:
    """`Sources: [1] train-000003/image0 (media/000003.png, 0.912); ...`."""
    cited = [
        f"[{n}] {hit.get('id')} ({hit.get('path') or 'text'}, {hit.get('score', 0.0):.3f})"
        for n, hit in enumerate(hits, 1)
    ]
    return "Sources: " + "; ".join(cited)


def retrieve(index_dir: str, question: str, k: int = 3) -> list[Hit]:
    """The top-k items of an index for a text question."""
    from omnifuse.embeddings.indexing import search_index

    return search_index(index_dir, question, k=k)


def chat_modalities(model_dir: str) -> set[str]:
    """Modality names the chat model reads (from its saved processor, without loading weights)."""
    import json
    from pathlib import Path

    from omnifuse.processing.processor import PROCESSOR_FILE

    path = Path(model_dir) / PROCESSOR_FILE
    return set(json.loads(path.read_text()).get("modalities", {})) if path.is_file() else set()
