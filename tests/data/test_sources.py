"""Reading records from files, shard folders and `datasets` datasets; reports; map-style and streaming datasets."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch.utils.data
from PIL import Image

from omnifuse.data.formats import DatasetFormatError, Record, Skip
from omnifuse.data.sources import (
    MessagesDataset,
    StreamingMessagesDataset,
    ValidationReport,
    iter_records,
    source_file,
    validate_dataset,
)


def sample(answer: str, image: str | None = None) -> dict:
    """A native messages record asking about an optional image."""
    content = ([{"type": "image", "path": image}] if image else []) + [{"type": "text", "text": "What?"}]
    return {
        "messages": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "id": answer,
    }


def write_jsonl(path: Path, lines: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


@pytest.fixture
def ds_dir(tmp_path: Path) -> Path:
    """A dataset folder holding one real PNG."""
    (tmp_path / "img").mkdir()
    Image.new("RGB", (4, 4), "red").save(tmp_path / "img" / "red.png")
    return tmp_path


def test_jsonl_yields_exactly_one_record_or_skip_per_line(ds_dir: Path):
    no_answer = {"messages": [{"role": "user", "content": "Hi"}]}
    path = write_jsonl(
        ds_dir / "train.jsonl",
        [sample("a", "img/red.png"), '{"messages": [', sample("b", "img/missing.png"), "", no_answer, sample("c")],
    )
    items = list(iter_records(path))
    assert [type(i).__name__ for i in items] == ["Record", "Skip", "Skip", "Skip", "Record"]
    assert [i.source for i in items] == [f"{path}:{n}" for n in (1, 2, 3, 5, 6)]
    assert items[1].reason.startswith("invalid JSON: Expecting")
    assert "media file 'img/missing.png' not found" in items[2].reason
    assert items[2].reason.startswith("messages[0].content[0].path:")
    assert items[3].reason == "messages: has no assistant turn to learn from"
    assert items[0].messages[0]["content"][0] == {"type": "image", "path": str((ds_dir / "img" / "red.png").resolve())}
    assert items[4].extra == {"id": "c"}


def test_strict_raises_on_the_first_bad_line(ds_dir: Path):
    path = write_jsonl(ds_dir / "train.jsonl", [sample("a"), sample("b", "img/missing.png"), "not json"])
    with pytest.raises(DatasetFormatError, match=rf"^{path}:2: messages\[0\]\.content\[0\]\.path: media file"):
        list(iter_records(path, strict=True))


def test_strict_error_for_unparsable_line_names_file_and_line(ds_dir: Path):
    path = write_jsonl(ds_dir / "train.jsonl", ["", "{oops", sample("a")])
    with pytest.raises(DatasetFormatError, match=rf"^{path}:2: invalid JSON: Expecting property name"):
        list(iter_records(path, strict=True))


def test_dataset_dict_asks_for_one_split():
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"a": 1}])})
    with pytest.raises(DatasetFormatError, match=r"^dataset: holds the splits \['train'\]; pass one"):
        list(iter_records(splits))


def test_non_utf8_line_is_a_skip_not_a_crash(ds_dir: Path):
    path = ds_dir / "bad.jsonl"
    path.write_bytes(json.dumps(sample("a")).encode() + b"\n\xff\xfe{}\n")
    items = list(iter_records(path))
    assert isinstance(items[0], Record)
    assert items[1] == Skip(f"{path}:2", "not UTF-8 text: invalid start byte")


def test_llava_json_list_knows_each_items_line(ds_dir: Path):
    recs = [
        {"id": 0, "image": "img/red.png", "conversations": [{"from": "human", "value": "<image>\nColor?"}]},
        {"id": 1, "image": "img/red.png", "conversations": [{"from": "human", "value": "Color?"}]},
    ]
    recs[0]["conversations"].append({"from": "gpt", "value": "Red."})
    path = ds_dir / "llava.json"
    path.write_text(json.dumps(recs, indent=2))
    items = list(iter_records(path))
    assert [i.source for i in items] == [f"{path}:2 (item 0)", f"{path}:16 (item 1)"]
    assert isinstance(items[0], Record) and items[0].extra == {"id": 0}
    assert items[1].reason == "messages: has no assistant turn to learn from"


def test_json_list_syntax_error_reports_where_reading_stopped(ds_dir: Path):
    path = ds_dir / "broken.json"
    path.write_text("[\n" + json.dumps(sample("a")) + ",\n" + json.dumps(sample("b")) + "\n" + '{"x": 1}]')
    items = list(iter_records(path))
    assert isinstance(items[0], Record) and isinstance(items[1], Record)
    assert items[2] == Skip(
        f"{path}:4 (item 2)", "invalid JSON: expected ',' or ']' after this item; the rest of the file is unread"
    )


def test_shard_folder_reads_all_files_in_sorted_order(ds_dir: Path):
    write_jsonl(ds_dir / "b.jsonl", [sample("b1"), sample("b2")])
    write_jsonl(ds_dir / "a.jsonl", [sample("a1", "img/red.png")])
    write_jsonl(ds_dir / "sub" / "c.jsonl", [sample("c1", "../img/red.png"), sample("c2", "../../x.png")])
    (ds_dir / "d.json").write_text(json.dumps([sample("d1")]))
    (ds_dir / "notes.txt").write_text("ignored")
    records, report = validate_dataset(ds_dir)
    assert [r.extra["id"] for r in records] == ["a1", "b1", "b2", "d1", "c1"]
    assert report.records == 5
    # Sorted by path below the folder ("d.json" < "sub/c.jsonl"); media relative to the shard, inside the folder.
    assert report.skipped[0].source == f"{ds_dir / 'sub' / 'c.jsonl'}:2"
    assert "outside the media folder" in report.skipped[0].reason
    assert report.per_source_file == {
        str(ds_dir / "a.jsonl"): 1,
        str(ds_dir / "b.jsonl"): 2,
        str(ds_dir / "sub" / "c.jsonl"): 1,
        str(ds_dir / "d.json"): 1,
    }


def test_media_dir_is_the_base_and_the_boundary(ds_dir: Path, tmp_path_factory):
    data = write_jsonl(tmp_path_factory.mktemp("elsewhere") / "t.jsonl", [sample("a", "red.png")])
    (record,) = iter_records(data, media_dir=ds_dir / "img")
    assert record.messages[0]["content"][0]["path"] == str((ds_dir / "img" / "red.png").resolve())
    (skip,) = iter_records(data, media_dir=ds_dir)
    assert "media file 'red.png' not found" in skip.reason


def test_missing_path_and_empty_folder_are_clear_errors(tmp_path: Path):
    with pytest.raises(DatasetFormatError, match="nope.jsonl: no such file or folder"):
        list(iter_records(tmp_path / "nope.jsonl"))
    with pytest.raises(DatasetFormatError, match="folder holds no .jsonl or .json shards"):
        list(iter_records(tmp_path))


def test_in_memory_datasets_dataset_and_its_streaming_form(ds_dir: Path):
    rows = [
        {"conversations": [{"from": "human", "value": "<image>Color?"}, {"from": "gpt", "value": "Red"}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], "images": []},
        {"conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "?"}], "images": []},
    ]
    rows[0]["images"] = ["img/red.png"]
    ds = datasets.Dataset.from_list(rows)
    for source in (ds, ds.to_iterable_dataset(num_shards=2)):
        items = list(iter_records(source, media_dir=ds_dir))
        assert [i.source for i in items] == ["dataset[0]", "dataset[1]", "dataset[2]"]
        assert items[0].messages[0]["content"] == [
            {"type": "image", "path": str((ds_dir / "img" / "red.png").resolve())},
            {"type": "text", "text": "Color?"},
        ]
        assert items[1].messages == [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello"}]},
        ]
        assert items[2].reason.startswith("images: 1 <image> token(s) in the conversation but 0 image(s)")


def test_datasets_image_column_stays_undecoded_bytes(ds_dir: Path):
    png = (ds_dir / "img" / "red.png").read_bytes()
    ds = datasets.Dataset.from_dict(
        {
            "messages": [[{"role": "user", "content": "<image>Color?"}, {"role": "assistant", "content": "Red"}]],
            "images": [[{"bytes": png, "path": None}]],
        }
    ).cast_column("images", datasets.List(datasets.Image()))
    (record,) = iter_records(ds.to_iterable_dataset())
    assert record.messages[0]["content"][0] == {"type": "image", "image": png}


def test_hf_uri_streams_the_named_split(monkeypatch):
    calls = []
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}]

    def fake_load(name, **kwargs):
        calls.append((name, kwargs))
        return datasets.Dataset.from_list(rows).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    (record,) = iter_records("hf://org/chat:validation")
    assert calls == [("org/chat", {"split": "validation", "streaming": True})]
    assert record.source == "hf://org/chat:validation[0]"


def test_report_format_caps_the_skip_list():
    skips = [Skip(f"t.jsonl:{n}", "invalid JSON") for n in range(1, 8)]
    report = ValidationReport(records=3, skipped=skips, per_source_file={"t.jsonl": 3})
    assert (
        report.format(max_skips=2)
        == "3 records, 7 skipped\nt.jsonl:1: invalid JSON\nt.jsonl:2: invalid JSON\n... and 5 more"
    )


@pytest.mark.parametrize(
    ("source", "file"), [("a/b.jsonl:12", "a/b.jsonl"), ("x.json:3 (item 2)", "x.json"), ("dataset[4]", "dataset")]
)
def test_source_file(source: str, file: str):
    assert source_file(source) == file


def test_messages_dataset_holds_records_and_report(ds_dir: Path):
    path = write_jsonl(ds_dir / "t.jsonl", [sample("a", "img/red.png"), "oops", sample("b")])
    dataset = MessagesDataset.from_path(path)
    assert len(dataset) == 2
    assert isinstance(dataset[1], Record) and dataset[1].extra == {"id": "b"}
    assert dataset.report.format().splitlines()[:2] == [
        "2 records, 1 skipped",
        f"{path}:2: invalid JSON: Expecting value (column 1)",
    ]


def _identity(item):
    return item


@pytest.mark.parametrize("as_hf", [False, True], ids=["jsonl", "hf-iterable"])
def test_streaming_dataset_splits_workers_and_ranks_exactly_once(ds_dir: Path, as_hf: bool):
    records = [sample(f"r{i}") for i in range(11)]
    path = write_jsonl(ds_dir / "t.jsonl", [*records[:5], "bad line", *records[5:]])
    source = datasets.Dataset.from_list(records).to_iterable_dataset(num_shards=1) if as_hf else path
    seen = []
    for rank in range(2):
        stream = StreamingMessagesDataset(source, rank=rank, world_size=2)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2, collate_fn=_identity)
        seen += [record.extra["id"] for record in loader]
    assert sorted(seen) == sorted(f"r{i}" for i in range(11))


def test_streaming_dataset_rejects_bad_rank():
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\), got 2"):
        StreamingMessagesDataset("x.jsonl", rank=2, world_size=2)


def test_a_record_over_the_byte_limit_is_one_skip(tmp_path: Path, monkeypatch):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    big = {"messages": [{"role": "user", "content": "q" * 5000}, {"role": "assistant", "content": "a"}]}
    monkeypatch.setenv("OMNIFUSE_MAX_RECORD_BYTES", "1000")
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in (good, big, good)) + "\n")
    (tmp_path / "d.json").write_text(json.dumps([good, big, good]))
    for name in ("d.jsonl", "d.json"):
        records, report = validate_dataset(tmp_path / name)
        assert len(records) == 2 and len(report.skipped) == 1
        assert "over the limit of 1000 (OMNIFUSE_MAX_RECORD_BYTES)" in report.skipped[0].reason
