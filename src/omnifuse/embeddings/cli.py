"""`omnifuse embed | classify | index build|add|delete|search`, and `chat --rag INDEX`.

Registered into the main parser by `register(subparsers)` (one line in `omnifuse.cli.build_parser`).
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OutputPathError, UsageError

MEDIA_FLAGS = ("image", "audio", "video")


class AddItem(argparse.Action):
    """Collect --text / --image / --audio / --video / --media NAME=P into one list, in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "items", None) or [])
        items.append((self.metavar, values))
        namespace.items = items


def add_item_flags(p: argparse.ArgumentParser, text: bool = True) -> None:
    if text:
        p.add_argument("--text", action=AddItem, metavar="text", dest="items", help="a text to embed")
    for flag in MEDIA_FLAGS:
        p.add_argument(f"--{flag}", action=AddItem, metavar=flag, dest="items", help=f"an {flag} file")
    p.add_argument("--media", action=AddItem, metavar="media", dest="items", help="NAME=PATH, any modality")


def parse_items(pairs: list[tuple[str, str]] | None) -> list[Any]:
    """Flags -> texts and content parts; files must exist."""
    items: list[Any] = []
    for flag, value in pairs or []:
        if flag == "text":
            items.append(value)
            continue
        name, path = value.partition("=")[::2] if flag == "media" else (flag, value)
        if not name or not path:
            raise UsageError(f"--media takes NAME=PATH (e.g. depth=scan.png), got {value!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{name} {path}: no such file")
        items.append({"type": name, "path": path})
    if not items:
        raise UsageError("give at least one --text, --image, --audio, --video or --media NAME=PATH")
    return items


def cmd_embed(args: argparse.Namespace) -> dict:
    from omnifuse.embeddings.embed import Embedder

    items = parse_items(args.items)
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".npy", ".json"):
        raise OutputPathError(f"--out {out}: use a .npy or .json file name")
    vectors = Embedder.from_folder(args.model).embed(items, batch_size=args.batch_size)
    result: dict[str, Any] = {"task": "embed", "count": len(vectors), "dim": int(vectors.shape[1])}
    if out is None:
        return result | {"vectors": vectors.round(6).tolist()}
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, vectors)
    else:
        out.write_text(json.dumps(vectors.tolist()))
    return result | {"out": str(out)}


def cmd_classify(args: argparse.Namespace) -> dict:
    from omnifuse.embeddings.zero_shot import classify

    items = parse_items(args.items)
    return {"task": "classify", **classify(args.model, items, args.labels)}


def cmd_index(args: argparse.Namespace) -> dict:
    from omnifuse.embeddings import indexing

    if args.action == "build":
        return indexing.build_index(args.model, args.data, args.out, args.batch_size, args.overwrite)
    if args.action == "add":
        return indexing.add_to_index(args.index, args.data, args.batch_size)
    if args.action == "delete":
        return indexing.delete_from_index(args.index, args.ids)
    query = parse_items(args.items)
    if len(query) != 1:
        raise UsageError("index search takes exactly one query (--text, --image, --audio, --video or --media)")
    hits = indexing.search_index(args.index, query[0], k=args.k, kind=args.kind)
    return {"task": "index-search", "hits": hits}


def cmd_chat_rag(original, args: argparse.Namespace):
    """`chat --rag INDEX "question"`: retrieved items go into the prompt; sources are printed after the answer."""
    if not getattr(args, "rag", None):
        return original(args)
    from omnifuse.embeddings.rag import rag_chat

    if not args.prompt:
        raise UsageError("chat --rag needs a question (the prompt)")
    media = {flag: getattr(args, flag, None) for flag in MEDIA_FLAGS}
    for value in args.media or ():
        name, _, path = value.partition("=")
        if not name or not path:
            raise UsageError(f"--media takes NAME=PATH, got {value!r}")
        media[name] = path
    rag_chat(args.model, args.rag, args.prompt, media, k=args.rag_k, max_new_tokens=args.max_new_tokens)
    return None


def cmd_serve_rag(original, args: argparse.Namespace):
    """`serve --rag-index INDEX` / `--embeddings-model DIR`: attach /v1/embeddings and the "rag" extension."""
    if getattr(args, "rag_index", None) or getattr(args, "embeddings_model", None):
        from omnifuse.embeddings.serving import RagService

        args.rag_service = RagService.from_folders(args.rag_index, args.embeddings_model)
    return original(args)


def register(sub) -> None:
    """Add embed / classify / index, and `--rag` to an existing `chat` subcommand."""
    p = sub.add_parser("embed", help="L2-normalised vectors for texts and media (JSON line or --out .npy/.json)")
    p.add_argument("--model", required=True, help="a folder trained with a contrastive stage")
    add_item_flags(p)
    p.add_argument("--out", help="x.npy or x.json; without it the vectors are in the JSON line")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_embed, items=[])

    p = sub.add_parser("classify", help="zero-shot classification of a medium against text labels (CLIP-style)")
    p.add_argument("--model", required=True)
    add_item_flags(p, text=False)
    p.add_argument("--labels", nargs="+", required=True, help='prompts, e.g. "a photo of a red circle"')
    p.set_defaults(func=cmd_classify, items=[])

    p = sub.add_parser("index", help="a vector index of a dataset's media and texts (Qdrant local mode)")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="embed a dataset into a new index folder")
    b.add_argument("--model", required=True)
    b.add_argument("--data", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--overwrite", action="store_true")
    a = actions.add_parser("add", help="embed another dataset into an existing index (same ids are replaced)")
    a.add_argument("index")
    a.add_argument("--data", required=True)
    a.add_argument("--batch-size", type=int, default=64)
    d = actions.add_parser("delete", help="remove items by id")
    d.add_argument("index")
    d.add_argument("--ids", nargs="+", required=True)
    s = actions.add_parser("search", help="the k nearest items to a text or a medium")
    s.add_argument("index")
    add_item_flags(s)
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--kind", help="only items of this kind (text, image, audio, ...)")
    for q in (b, a, d, s):
        q.set_defaults(func=cmd_index, items=[])

    serve = sub.choices.get("serve")
    if serve is not None:
        serve.add_argument("--rag-index", help='an index for the chat requests\' "rag" extension')
        serve.add_argument("--embeddings-model", help="a contrastive-trained folder for /v1/embeddings")
        serve.set_defaults(func=functools.partial(cmd_serve_rag, serve.get_default("func")))

    chat = sub.choices.get("chat")
    if chat is not None:
        chat.add_argument("--rag", metavar="INDEX", help="retrieve items from this index into the prompt")
        chat.add_argument("--rag-k", type=int, default=3, help="items to retrieve (default 3)")
        chat.set_defaults(func=functools.partial(cmd_chat_rag, chat.get_default("func")))
