"""Where records come from: a JSONL/JSON file, a folder of shards, or a `datasets` dataset.

Every input line or row ends up as exactly one :class:`Record` or :class:`Skip` (blank lines
excepted), so nothing is dropped without a reason. Media stay as paths here; they are decoded
later, lazily, by the collator inside DataLoader workers.

Example:
    >>> records, report = validate_dataset("data/train.jsonl")  # doctest: +SKIP
    >>> print(report.format())  # doctest: +SKIP
    998 records, 2 skipped
    data/train.jsonl:17: messages: has no assistant turn to learn from
    ...
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.utils.data

from omnifuse.data.formats import (
    DatasetFormatError,
    Record,
    Skip,
    detect_format,
    extra_fields,
    to_messages,
    validate_record,
)
from omnifuse.data.media_paths import resolve_media_paths
from omnifuse.safety.limits import RECORD_BYTES_ENV, bounded_lines, max_record_bytes

logger = logging.getLogger(__name__)

SHARD_SUFFIXES = (".jsonl", ".json")
_HF_BATCH_ROWS = 256
_WHITESPACE = re.compile(r"\s*")
_LINE_SOURCE = re.compile(r"^(.*):\d+(?: \(item \d+\))?$")
_ROW_SOURCE = re.compile(r"^(.*)\[\d+\]$")


@dataclass
class _RawItem:
    """One undecoded input unit: a parsed JSON value, or the error that kept it from parsing."""

    source: str
    value: Any
    base_dir: Path
    root: Path


def iter_records(
    path: str | Path | Any,
    *,
    media_dir: str | Path | None = None,
    fmt: str | None = None,
    strict: bool = False,
) -> Iterator[Record | Skip]:
    """Yield one Record or Skip per input record, in input order.

    ``path`` is a ``.jsonl`` file, a ``.json`` list, a folder of shards, ``"hf://name[:split]"``
    (streamed) or a ``datasets.Dataset`` / ``IterableDataset``. Media paths resolve relative to
    the file that names them (``media_dir`` for `datasets` sources, default: the current folder)
    and may not leave the dataset folder (or ``media_dir``). With ``strict`` the first unusable
    record raises DatasetFormatError instead of becoming a Skip.

    Example:
        >>> for item in iter_records("data/train.jsonl"):  # doctest: +SKIP
        ...     print(item.source)
        data/train.jsonl:1
    """
    return _convert(_iter_raw(path, media_dir), fmt=fmt, strict=strict)


def _convert(items: Iterable[_RawItem], *, fmt: str | None, strict: bool) -> Iterator[Record | Skip]:
    for item in items:
        try:
            if isinstance(item.value, DatasetFormatError):
                raise item.value.at(item.source)
            result: Record | Skip = parse_record(
                item.value, source=item.source, base_dir=item.base_dir, root=item.root, fmt=fmt
            )
        except DatasetFormatError as err:
            if strict:
                raise
            result = Skip(source=err.source, reason=err.reason)
        yield result


def _iter_raw(path: str | Path | Any, media_dir: str | Path | None) -> Iterator[_RawItem]:
    media = Path(media_dir) if media_dir is not None else None
    if _is_hf_dataset(path):
        yield from _iter_hf_rows(path, "dataset", media)
        return
    if isinstance(path, str) and path.startswith("hf://"):
        yield from _iter_hf_rows(_load_hub_dataset(path), path, media)
        return
    path = Path(path)
    if path.is_dir():
        for shard in _shard_files(path):
            yield from _iter_file(shard, base_dir=media or shard.parent, root=media or path)
    elif path.is_file():
        yield from _iter_file(path, base_dir=media or path.parent, root=media or path.parent)
    else:
        raise DatasetFormatError("no such file or folder", source=str(path))


def _shard_files(folder: Path) -> list[Path]:
    shards = sorted(
        (p for p in folder.rglob("*") if p.suffix in SHARD_SUFFIXES and p.is_file()),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not shards:
        raise DatasetFormatError("folder holds no .jsonl or .json shards", source=str(folder))
    return shards


def _iter_file(path: Path, *, base_dir: Path, root: Path) -> Iterator[_RawItem]:
    if path.suffix not in SHARD_SUFFIXES:
        raise DatasetFormatError(f"unsupported file type {path.suffix!r}; use .jsonl or .json", source=str(path))
    if path.suffix == ".json" and _first_char(path) == "[":
        yield from _iter_json_list(path, base_dir, root)
    else:
        # A .json file that is not a list is read as JSON lines, as LLaMA-Factory does.
        yield from _iter_jsonl(path, base_dir, root)


def _first_char(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8-sig", errors="replace")
    return head.lstrip()[:1]


def _iter_jsonl(path: Path, base_dir: Path, root: Path) -> Iterator[_RawItem]:
    # Bytes, decoded per line, so one bad line becomes one Skip rather than ending the file.
    max_bytes = max_record_bytes()
    with open(path, "rb") as fh:
        for lineno, raw in bounded_lines(fh, max_bytes):
            source = f"{path}:{lineno}"
            if isinstance(raw, int):
                yield _RawItem(source, _too_large(raw, max_bytes), base_dir, root)
                continue
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                yield _RawItem(source, DatasetFormatError(f"not UTF-8 text: {err.reason}"), base_dir, root)
                continue
            if text.strip():
                yield _RawItem(source, _parse_json(text), base_dir, root)


def _too_large(size: int, max_bytes: int) -> DatasetFormatError:
    return DatasetFormatError(f"the record is {size} bytes, over the limit of {max_bytes} ({RECORD_BYTES_ENV})")


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        return DatasetFormatError(f"invalid JSON: {err.msg} (column {err.colno})")
    except RecursionError:
        return DatasetFormatError("invalid JSON: nested too deeply")


def _iter_json_list(path: Path, base_dir: Path, root: Path) -> Iterator[_RawItem]:
    """Walk a top-level JSON list element by element so each record knows its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        yield _RawItem(f"{path}:1", DatasetFormatError(f"not UTF-8 text: {err.reason}"), base_dir, root)
        return
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, text.index("[") + 1).end()
    line, counted_to, index = 1, 0, 0
    closed = text.startswith("]", pos)
    while not closed:
        line, counted_to = line + text.count("\n", counted_to, pos), pos
        source = f"{path}:{line} (item {index})"
        try:
            value, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as err:
            reason = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            # Past a syntax error element boundaries are unknown; say so instead of guessing.
            error = DatasetFormatError(f"invalid JSON: {reason}; the rest of the file is unread")
            yield _RawItem(source, error, base_dir, root)
            return
        too_large = end - pos > max_record_bytes()  # characters, a lower bound on the bytes
        yield _RawItem(source, _too_large(end - pos, max_record_bytes()) if too_large else value, base_dir, root)
        index += 1
        pos = _WHITESPACE.match(text, end).end()
        closed = text.startswith("]", pos)
        if not closed and not text.startswith(",", pos):
            line += text.count("\n", counted_to, pos)
            reason = "invalid JSON: expected ',' or ']' after this item; the rest of the file is unread"
            yield _RawItem(f"{path}:{line} (item {index})", DatasetFormatError(reason), base_dir, root)
            return
        pos = _WHITESPACE.match(text, pos + 1).end()


def _is_hf_dataset(obj: Any) -> bool:
    # Checked by module, so `datasets` is only imported when the caller already uses it.
    return type(obj).__module__.startswith("datasets.") and hasattr(obj, "with_format")


def _load_hub_dataset(uri: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError(f"reading {uri} needs the `datasets` package: pip install datasets") from None
    name, _, split = uri.removeprefix("hf://").partition(":")
    try:
        return datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as err:  # any loader failure (offline, missing split) is unusable input
        raise DatasetFormatError(f"could not load the dataset: {err}", source=uri) from err


def _iter_hf_rows(dataset: Any, name: str, media_dir: Path | None) -> Iterator[_RawItem]:
    if isinstance(dataset, dict):
        raise DatasetFormatError(f"holds the splits {sorted(dataset)}; pass one, e.g. dataset['train']", source=name)
    base = media_dir or Path.cwd()
    index = 0
    # Arrow rows hold media columns undecoded ({"bytes", "path"}), which keeps decoding lazy.
    for table in dataset.with_format("arrow").iter(batch_size=_HF_BATCH_ROWS):
        for row in table.to_pylist():
            yield _RawItem(f"{name}[{index}]", row, base, base)
            index += 1


@dataclass
class ValidationReport:
    """What validation found: how many records are usable, and each skipped one with its reason.

    Example:
        >>> print(ValidationReport(2, [Skip("a.jsonl:3", "invalid JSON")], {"a.jsonl": 2}).format())
        2 records, 1 skipped
        a.jsonl:3: invalid JSON
    """

    records: int = 0
    skipped: list[Skip] = field(default_factory=list)
    per_source_file: dict[str, int] = field(default_factory=dict)

    def format(self, max_skips: int = 50) -> str:
        """A human-readable multi-line report, listing at most ``max_skips`` skips."""
        lines = [f"{self.records} records, {len(self.skipped)} skipped"]
        if len(self.per_source_file) > 1:
            lines += [f"  {name}: {count} records" for name, count in self.per_source_file.items()]
        lines += [f"{skip.source}: {skip.reason}" for skip in self.skipped[:max_skips]]
        if len(self.skipped) > max_skips:
            lines.append(f"... and {len(self.skipped) - max_skips} more")
        return "\n".join(lines)


def source_file(source: str) -> str:
    """The file (or dataset name) part of a record source: ``"a.jsonl:3"`` -> ``"a.jsonl"``."""
    match = _LINE_SOURCE.match(source) or _ROW_SOURCE.match(source)
    return match.group(1) if match else source


def validate_dataset(
    path: str | Path | Any,
    *,
    media_dir: str | Path | None = None,
    fmt: str | None = None,
    strict: bool = False,
) -> tuple[list[Record], ValidationReport]:
    """Read a whole dataset, returning its usable records and a report of what was skipped.

    Example:
        >>> records, report = validate_dataset("data/train.jsonl", strict=False)  # doctest: +SKIP
        >>> report.records == len(records)  # doctest: +SKIP
        True
    """
    records: list[Record] = []
    report = ValidationReport()
    for item in iter_records(path, media_dir=media_dir, fmt=fmt, strict=strict):
        if isinstance(item, Skip):
            report.skipped.append(item)
            continue
        records.append(item)
        name = source_file(item.source)
        report.per_source_file[name] = report.per_source_file.get(name, 0) + 1
    report.records = len(records)
    return records, report


class MessagesDataset(torch.utils.data.Dataset):
    """Validated records held in memory (messages with media paths; media are decoded later).

    Example:
        >>> dataset = MessagesDataset.from_path("data/train.jsonl")  # doctest: +SKIP
        >>> print(dataset.report.format()); dataset[0].messages  # doctest: +SKIP
    """

    def __init__(self, records: list[Record], report: ValidationReport | None = None) -> None:
        self.records = records
        self.report = report

    @classmethod
    def from_path(
        cls,
        path: str | Path | Any,
        *,
        media_dir: str | Path | None = None,
        fmt: str | None = None,
        strict: bool = False,
    ) -> MessagesDataset:
        """Validate ``path`` (see :func:`iter_records`) and keep its usable records."""
        records, report = validate_dataset(path, media_dir=media_dir, fmt=fmt, strict=strict)
        return cls(records, report)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    def corpus(self) -> list[Record]:
        """Every record: what a tokenizer built from the data is trained on."""
        return self.records


class StreamingMessagesDataset(torch.utils.data.IterableDataset):
    """Records read lazily, split across DataLoader workers and ranks so each is seen once per epoch.

    Skipped records are logged as warnings (each by the one worker that owns it), or raise
    under ``strict``. Every worker reads the whole stream and keeps every n-th item.

    Example:
        >>> stream = StreamingMessagesDataset("hf://org/big", rank=0, world_size=8)  # doctest: +SKIP
        >>> loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=4)  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path | Any,
        *,
        media_dir: str | Path | None = None,
        fmt: str | None = None,
        strict: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.path, self.media_dir, self.fmt, self.strict = path, media_dir, fmt, strict
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[Record]:
        info = torch.utils.data.get_worker_info()
        num_workers, worker_id = (info.num_workers, info.id) if info is not None else (1, 0)
        num_parts = self.world_size * num_workers
        part = self.rank * num_workers + worker_id
        # Split before parsing, so each worker only converts and checks the records it owns.
        owned = (item for i, item in enumerate(_iter_raw(self.path, self.media_dir)) if i % num_parts == part)
        for result in _convert(owned, fmt=self.fmt, strict=self.strict):
            if isinstance(result, Skip):
                logger.warning("skipped %s: %s", result.source, result.reason)
                continue
            yield result


def parse_record(obj: Any, *, source: str, base_dir: Path, root: Path | None = None, fmt: str | None = None) -> Record:
    """Convert, validate and resolve one raw record; raise DatasetFormatError if it is unusable.

    Example:
        >>> parse_record({"messages": [{"role": "user", "content": "Hi"},
        ...     {"role": "assistant", "content": "Hello"}], "id": 7}, source="a.jsonl:1", base_dir=Path(".")).extra
        {'id': 7}
    """
    try:
        fmt = fmt or detect_format(obj)
    except DatasetFormatError as err:
        raise err.at(source) from None
    messages = to_messages(obj, fmt=fmt, source=source)
    validate_record(messages, source=source)
    messages = resolve_media_paths(messages, base_dir, source=source, root=root)
    return Record(messages=messages, source=source, extra=extra_fields(obj, fmt))
