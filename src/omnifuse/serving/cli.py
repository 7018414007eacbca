"""The `serve` and `chat` subcommands (registered into the `omnifuse` parser by `register`)."""

from __future__ import annotations

import argparse
import sys

from omnifuse.errors import UsageError


def cmd_serve(args: argparse.Namespace) -> None:
    import logging

    from omnifuse.serving.fetch import FetchPolicy
    from omnifuse.serving.limits import ServerLimits
    from omnifuse.serving.server import OmniServer

    try:
        limits = ServerLimits(**{name: getattr(args, name) for name in LIMIT_FLAGS})
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.max_batch < 1:
        raise UsageError(f"--max-batch must be at least 1, got {args.max_batch}")
    policy = FetchPolicy(
        allowed_domains=tuple(args.allowed_media_domains or ()), allowed_local_path=args.allowed_local_media_path
    )
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="omnifuse serve: %(message)s")
    print(f"omnifuse serve: loading {args.model}", file=sys.stderr)
    server = OmniServer.from_folder(
        args.model,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        limits=limits,
        policy=policy,
        api_key=args.api_key,
        default_max_tokens=args.default_max_tokens,
        media_cache_items=args.media_cache_items,
        rag=getattr(args, "rag_service", None),  # set by the embeddings package's --rag-index flag
        **_name(args),
    )
    print(
        f"omnifuse serve: http://{args.host}:{args.port} (model {server.state.model_name!r}; Ctrl-C drains and stops)",
        file=sys.stderr,
    )
    server.run()


def _name(args: argparse.Namespace) -> dict:
    return {"model_name": args.served_model_name} if args.served_model_name else {}


def cmd_chat(args: argparse.Namespace) -> None:
    from omnifuse.serving.chat import chat, interactive

    media = {"image": args.image, "audio": args.audio, "video": args.video}
    for item in args.media or ():
        name, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--media takes NAME=PATH, got {item!r}")
        media[name] = path
    if args.prompt is None:
        interactive(args.model, media, max_new_tokens=args.max_new_tokens)
    else:
        chat(args.model, args.prompt, media, max_new_tokens=args.max_new_tokens)


# ServerLimits fields exposed as --max-... flags (type, help).
LIMIT_FLAGS = {
    "max_body_bytes": (int, "largest request body in bytes (413 above)"),
    "max_media_items": (int, "media parts per request"),
    "max_media_bytes": (int, "encoded media bytes per request, all items"),
    "max_item_bytes": (int, "encoded bytes of one medium"),
    "max_pixels": (int, "pixels of one image or video frame"),
    "max_video_frames": (int, "frames kept per video after sampling"),
    "max_decoded_frames": (int, "frames a video may hold"),
    "max_video_seconds": (float, "longest video"),
    "max_audio_seconds": (float, "longest audio"),
    "max_tokens": (int, "most tokens one request may generate"),
    "max_messages": (int, "messages per request"),
}


def register(sub) -> None:
    """Add `serve` and `chat` to the `omnifuse` subcommands."""
    from omnifuse.serving.limits import ServerLimits

    p = sub.add_parser("serve", help="OpenAI-compatible HTTP server with continuous batching")
    p.add_argument("--model", required=True, help="a model folder (save_pretrained of model + processor)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", default=None, help="the model id clients use (default: folder name)")
    p.add_argument("--max-batch", type=int, default=16, help="rows decoded together")
    p.add_argument("--default-max-tokens", type=int, default=256, help="when a request sets no max_tokens")
    p.add_argument("--media-cache-items", type=int, default=256, help="encoded media kept (0: no cache)")
    p.add_argument("--allowed-media-domains", nargs="*", default=[], help="hosts media URLs may come from")
    p.add_argument("--allowed-local-media-path", default=None, help="folder local media paths may come from")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1/")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared, busy CPU)")
    defaults = ServerLimits()
    for name, (kind, text) in LIMIT_FLAGS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            default=getattr(defaults, name),
            help=f"{text} (default {getattr(defaults, name)})",
        )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("chat", help="answer one prompt, streamed; no prompt: an interactive session")
    p.add_argument("--model", required=True)
    p.add_argument("--image")
    p.add_argument("--audio")
    p.add_argument("--video")
    p.add_argument("--media", action="append", help="NAME=PATH for any other modality of the model")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("prompt", nargs="?", default=None, help="omit for an interactive session")
    p.set_defaults(func=cmd_chat)
