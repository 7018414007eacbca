"""RAG: retrieved items enter the prompt as content parts, numbered, and the answer cites them."""

import io

import pytest

from omnifuse.cli import main
from omnifuse.embeddings.indexing import build_index
from omnifuse.embeddings.rag import citations, rag_chat, rag_messages, retrieve


@pytest.fixture(scope="module")
def index(model_dir, pairs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rag") / "idx"
    build_index(model_dir, pairs, folder)
    return folder


def test_retrieved_media_become_content_parts_of_the_prompt(tiny_parts, index):
    _, processor = tiny_parts
    hits = retrieve(str(index), "a red circle.", k=4)
    assert len(hits) == 4
    messages = rag_messages("Which shape is red?", hits, set(processor.specs))
    parts = messages[0]["content"]
    media_hits = [h for h in hits if h["kind"] != "text"]
    assert [p["path"] for p in parts[:-1]] == [h["path"] for h in media_hits]
    prompt = parts[-1]["text"]
    for n, hit in enumerate(hits, 1):
        assert f"[{n}] {hit['kind']}" in prompt and hit["id"] in prompt
    assert prompt.endswith("Question: Which shape is red?")
    rendered = processor.render(messages, add_generation_prompt=True)
    placeholders = sum(rendered.count(processor.specs[h["kind"]].placeholder) for h in media_hits)
    assert placeholders == len(media_hits)
    # A model without a hit's modality gets that hit as text only.
    text_only = rag_messages("q", hits, set())[0]["content"]
    assert len(text_only) == 1 and all(h["id"] in text_only[0]["text"] for h in hits)


def test_rag_chat_answers_and_cites(model_dir, index):
    out = io.StringIO()
    reply, hits = rag_chat(str(model_dir), str(index), "a single low tone.", {}, k=2, max_new_tokens=3, out=out)
    text = out.getvalue()
    assert text.rstrip().endswith(citations(hits)) and reply in text
    assert all(hit["id"] in text for hit in hits) and "[2]" in citations(hits)


def test_chat_rag_flag(model_dir, index, capsys):
    code = main(["chat", "--model", str(model_dir), "--rag", str(index), "--rag-k", "2", "--max-new-tokens", "2",
                 "a red circle."])  # fmt: skip
    assert code == 0 and "Sources: [1]" in capsys.readouterr().out
    code = main(["chat", "--model", str(model_dir), "--rag", str(index)])
    assert code == 2
