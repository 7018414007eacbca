"""Retrieval-augmented chat: the top-k index items for a question, placed in the prompt, cited after.

Media hits of a modality the chat model reads become content parts (`{"type": "image", "path": ...}`),
numbered in a short context block with their captions; other hits enter as text. The answer is
followed by a `Sources:` line naming every item that was put in the prompt.

Example:
    >>> hits = search_index("runs/idx", "a red circle", k=3)  # doctest: +SKIP
    >>> messages = rag_messages("Which shape is red?", hits, {"image", "audio"})  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

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


def rag_messages(question: str, hits: list[Hit], modalities: set[str], own_parts: list[dict] = ()) -> list[dict]:
    """One user turn: the retrieved media parts, the user's own media, then the context and the question."""
    prompt, media = rag_context(question, hits, modalities)
    parts = [{"type": kind, "path": path} for kind, path in media]
    return [{"role": "user", "content": [*parts, *own_parts, {"type": "text", "text": prompt}]}]


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


def rag_chat(
    model_dir: str,
    index_dir: str,
    question: str,
    media: dict[str, str | None],
    k: int = 3,
    max_new_tokens: int = 64,
    out: TextIO | None = None,
) -> tuple[str, list[Hit]]:
    """Retrieve, answer (streamed to `out`), then write the `Sources:` line. Returns (answer, hits)."""
    from omnifuse.modeling.folder import load_omni_folder
    from omnifuse.serving.chat import answer, media_parts

    out = out or sys.stdout
    hits = retrieve(index_dir, question, k)
    print(f"retrieved {len(hits)} items from {index_dir}", file=sys.stderr)
    model, processor = load_omni_folder(model_dir)
    messages = rag_messages(question, hits, set(processor.specs), media_parts(media))
    reply = answer(model, processor, messages, out, max_new_tokens)
    out.write("\n" + citations(hits) + "\n")
    out.flush()
    return reply, hits
