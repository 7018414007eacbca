"""`omnifuse chat`: one streamed answer, and the interactive session driven through piped stdin."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from omnifuse.cli import main
from omnifuse.serving.chat import ChatSession


def test_one_prompt_streams_the_answer(model_dir, tmp_path, media, capsys):
    image = tmp_path / "red.png"
    image.write_bytes(media.png())
    assert main(["chat", "--model", str(model_dir), "--image", str(image), "--max-new-tokens", "4", "color?"]) == 0
    assert capsys.readouterr().out.strip()
    assert main(["chat", "--model", str(model_dir), "--image", str(tmp_path / "missing.png"), "color?"]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err


def test_session_keeps_the_conversation_and_attaches_media(loaded, tmp_path, media):
    model, processor = loaded
    (tmp_path / "a.png").write_bytes(media.png())
    (tmp_path / "a.wav").write_bytes(media.wav())
    (tmp_path / "a.mp4").write_bytes(media.video())
    out = io.StringIO()
    session = ChatSession(model, processor, out, max_new_tokens=3)
    for line in [
        f"/image {tmp_path / 'a.png'}",
        f"/audio {tmp_path / 'a.wav'}",
        "what is it?",
        f"/video {tmp_path / 'a.mp4'}",
        "and now?",
    ]:
        assert session.handle(line)
    roles = [m["role"] for m in session.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert [p["type"] for p in session.messages[0]["content"]] == ["image", "audio", "text"]
    assert [p["type"] for p in session.messages[2]["content"]] == ["video", "text"]
    session.handle("/reset")
    assert session.messages == [] and "(conversation reset)" in out.getvalue()
    session.handle("/image nope.png")
    session.handle("/hologram x")
    assert "nope.png: no such file" in out.getvalue() and "unknown command /hologram" in out.getvalue()
    assert session.pending == [] and not session.handle("/quit")


def test_interactive_session_through_piped_stdin(model_dir, tmp_path, media):
    image = tmp_path / "red.png"
    image.write_bytes(media.png())
    script = f"/image {image}\nwhat color?\nand again?\n/reset\nhello\n"
    exe = Path(sys.executable).parent / "omnifuse"
    done = subprocess.run(
        [exe, "chat", "--model", str(model_dir), "--max-new-tokens", "3"],
        input=script,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("model> ") == 3
    assert "(image red.png attached to your next message)" in out and "(conversation reset)" in out
