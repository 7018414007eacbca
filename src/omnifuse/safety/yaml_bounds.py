"""YAML that cannot explode: a size bound on the text and on the document once aliases are expanded.

`yaml.safe_load` never runs code, but an alias bomb (`&a [x, x, ...]`, `&b [*a, *a, ...]`, ...) of a few
hundred bytes stands for billions of values; whatever walks the result afterwards (validation, JSON
dumps) hangs or runs out of memory. The node graph is composed first and its expanded size counted,
with memoization, in time linear in the text.

Example:
    >>> load_yaml_bounded("a: [1, 2]", "recipe.yaml")
    {'a': [1, 2]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from omnifuse.safety.limits import InputLimitError

MAX_YAML_BYTES = 1 * 2**20  # a recipe is a page of settings, not data
MAX_YAML_NODES = 100_000  # values after alias expansion


def read_text_bounded(path: str | Path, source: str, max_bytes: int = MAX_YAML_BYTES) -> str:
    """A small UTF-8 text file; a large or binary file is an InputLimitError naming it (OSError passes)."""
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputLimitError(f"{source}: over {max_bytes} bytes; a recipe is a small YAML file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputLimitError(f"{source}: not UTF-8 text (byte {err.start}); is this a YAML file?") from None


def load_yaml_bounded(text: str, source: str, max_nodes: int = MAX_YAML_NODES) -> Any:
    """`yaml.safe_load`, refusing text over MAX_YAML_BYTES or a document of over `max_nodes` expanded values.

    Syntax errors stay `yaml.YAMLError` (callers report their line).
    """
    if len(text) > MAX_YAML_BYTES:
        raise InputLimitError(f"{source}: over {MAX_YAML_BYTES} characters of YAML")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        size = expanded_size(root, {}) if root is not None else 0
    except RecursionError:
        raise InputLimitError(f"{source}: YAML nested too deeply") from None
    if size > max_nodes:
        raise InputLimitError(
            f"{source}: the YAML expands to {size:,} values (aliases included), over the limit of {max_nodes:,}"
        )
    return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader: plain data only


def expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Values a node stands for once every alias is expanded (an alias is the same node object, reused)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a node that contains itself (a recursive alias) counts once, not forever
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(expanded_size(k, memo) + expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(expanded_size(child, memo) for child in node.value)
    else:
        size = 1
    memo[key] = size
    return size


__all__ = ["MAX_YAML_BYTES", "MAX_YAML_NODES", "expanded_size", "load_yaml_bounded", "read_text_bounded"]
