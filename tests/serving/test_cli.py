"""`omnifuse serve` flags: bad values are usage errors (exit 2) before any model is loaded."""

from __future__ import annotations

from omnifuse.cli import build_parser, main
from omnifuse.serving.limits import ServerLimits


def test_limit_flags_reach_the_server_limits():
    args = build_parser().parse_args(
        [
            "serve",
            "--model",
            "m",
            "--max-pixels",
            "1000",
            "--max-audio-seconds",
            "2.5",
            "--allowed-media-domains",
            "a.example",
            "b.example",
            "--api-key",
            "k",
        ]
    )
    assert args.max_pixels == 1000 and args.max_audio_seconds == 2.5 and args.max_body_bytes == 16 * 2**20
    assert args.allowed_media_domains == ["a.example", "b.example"] and args.api_key == "k"
    assert ServerLimits(max_pixels=args.max_pixels).media_limits().max_pixels == 1000


def test_bad_serve_values_exit_2(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path), "--max-pixels", "0"]) == 2
    assert "max_pixels must be positive" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--max-batch", "0"]) == 2
    assert "--max-batch must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "missing is not a folder" in capsys.readouterr().err
    assert main(["chat", "--model", str(tmp_path), "--media", "depth", "hi"]) == 2
    assert "--media takes NAME=PATH" in capsys.readouterr().err
