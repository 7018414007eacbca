"""`/v1/embeddings` in the OpenAI format (the official client) and the chat `"rag"` extension."""

import base64
import json

import httpx
import numpy as np
import openai
import pytest

from omnifuse.embeddings.embed import Embedder
from omnifuse.embeddings.indexing import build_index
from omnifuse.embeddings.serving import RagService


@pytest.fixture(scope="module")
def served(model_dir, pairs, tmp_path_factory):
    from omnifuse.serving.server import OmniServer

    index = tmp_path_factory.mktemp("srv") / "idx"
    build_index(model_dir, pairs, index)
    service = RagService.from_folders(index_dir=str(index))
    embedder = Embedder.from_folder(model_dir)
    server = OmniServer(embedder.model, embedder.processor, "tiny", port=0, grace_seconds=5.0, rag=service)
    url = server.start_in_thread()
    yield url, embedder
    server.shutdown()


def test_embeddings_endpoint_matches_the_python_api(served, pairs):
    url, embedder = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    texts = ["a red circle.", "3 short beeps."]
    reply = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    got = np.array([d.embedding for d in reply.data])
    np.testing.assert_allclose(got, embedder.embed(texts), atol=1e-5)
    assert [d.index for d in reply.data] == [0, 1] and reply.usage.prompt_tokens > 0
    image = (pairs.parent / "media" / "000000.png").read_bytes()
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}}
    body = httpx.post(f"{url}/v1/embeddings", json={"input": [part], "encoding_format": "base64"}, timeout=60).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    expected = embedder.embed([{"type": "image", "path": str(pairs.parent / "media" / "000000.png")}])[0]
    np.testing.assert_allclose(vector, expected, atol=1e-5)
    bad = httpx.post(f"{url}/v1/embeddings", json={"input": []}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


def test_chat_rag_extension_returns_sources(served):
    url, _ = served
    request = {"model": "tiny", "max_tokens": 3, "messages": [{"role": "user", "content": "a red circle."}]}
    reply = httpx.post(f"{url}/v1/chat/completions", json=request | {"rag": {"k": 2}}, timeout=60).json()
    sources = reply["rag"]["sources"]
    assert len(sources) == 2 and all({"id", "score", "kind", "path"} <= set(s) for s in sources)
    plain = httpx.post(f"{url}/v1/chat/completions", json=request, timeout=60).json()
    assert "rag" not in plain
    bad = httpx.post(f"{url}/v1/chat/completions", json=request | {"rag": {"k": 500}}, timeout=60)
    assert bad.status_code == 400 and "rag" in json.dumps(bad.json())
