"""A tiny saved model (image, audio, video), media made on the fly, and the server in a thread.

Tests reach the helpers through fixtures (`media`, `model_dir`, `served`); importing a conftest module
by name is ambiguous once several test folders have one.
"""

from __future__ import annotations

import base64
import io
import wave
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch
from PIL import Image

from omnifuse import OmniForConditionalGeneration, OmniProcessor
from omnifuse.modeling.presets import tiny_audio_config, tiny_text_config, tiny_vision_config
from omnifuse.processing.tokenizer import build_bpe_tokenizer

CORPUS = ["what color is the circle? red blue green. describe the sound and the video in one word, please"]


def png_bytes(width: int = 24, height: int = 24, colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 32767).astype(np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def video_bytes(frames: int = 6, fps: int = 4, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            pixels = np.full((size, size, 3), (i * 40) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="session")
def media() -> SimpleNamespace:
    return SimpleNamespace(png=png_bytes, wav=wav_bytes, video=video_bytes, data_uri=data_uri)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving-model")
    tok = build_bpe_tokenizer(CORPUS, vocab_size=300)
    torch.manual_seed(0)
    model = OmniForConditionalGeneration.from_components(
        text=tiny_text_config(vocab_size=len(tok)),
        image=tiny_vision_config(),
        audio=tiny_audio_config(),
        video=True,
        tokenizer=tok,
    )
    model.save_pretrained(folder)
    OmniProcessor.from_model_config(model.config, tok).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def loaded(model_dir):
    from omnifuse.modeling.folder import load_omni_folder

    return load_omni_folder(model_dir)


def start_server(loaded, **options):
    from omnifuse.serving.server import OmniServer

    model, processor = loaded
    options = {"max_batch": 8, "grace_seconds": 20.0, "port": 0, **options}
    server = OmniServer(model, processor, "tiny", **options)
    return server, server.start_in_thread()


@pytest.fixture(scope="module")
def served(loaded):
    """A running server on a free loopback port: `.url`, `.server` (the OmniServer)."""
    server, url = start_server(loaded)
    yield SimpleNamespace(url=url, server=server)
    server.shutdown()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models decode fastest on one thread; on a busy shared CPU, two spin-wait each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
