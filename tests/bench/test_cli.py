"""`omnifuse bench ...` smoke runs at --size tiny: the JSON keys, sane values, outputs equal to the baseline."""

import json

import pytest

from omnifuse.cli import main


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["bench", *argv])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_reports_both_systems_and_matching_losses(capsys) -> None:
    code, out = run(capsys, "train", "--size", "tiny", "--steps", "3", "--batch-size", "6")
    assert code == 0 and out["task"] == "bench-train"
    assert out["ratio"] > 0 and out["throughput_ratio"] > 0
    for name in ("omnifuse", "baseline"):
        figures = out[name]
        assert figures["tokens_per_s"] > 0 and 0 < figures["mfu"] < 1 and figures["step_peak_rss_mb"] >= 0
        assert 0 <= figures["padding_fraction"] < 1
    # Same weights, same batches, same optimizer: the two loss curves agree to float noise.
    assert out["losses_match"] is True and out["loss_max_abs_diff"] < 1e-4
    assert out["omnifuse"]["padding_fraction"] < out["baseline"]["padding_fraction"]
    assert out["matmul_peak_gflops"] > 0 and out["process_peak_rss_mb"] > 0
    assert out["parameters"]["total"] == out["parameters"]["vision"] + out["parameters"]["language_model"]


def test_generate_outputs_are_identical_to_the_baseline(capsys) -> None:
    code, out = run(capsys, "generate", "--size", "tiny", "--prompts", "5", "--new-tokens", "4", "--repeats", "1")
    assert code == 0 and out["task"] == "bench-generate" and out["identical"] is True
    assert out["ratio"] > 0 and out["generated_tokens"] >= 5
    assert out["omnifuse"]["ttft_s"] > 0 and out["baseline"]["ttft_alone_s"] > 0
    assert out["baseline"]["ttft_queued_mean_s"] >= out["baseline"]["ttft_alone_s"]


def test_preprocess_outputs_match_the_transformers_processors(capsys) -> None:
    code, out = run(capsys, "preprocess", "--size", "tiny", "--repeats", "1", "--image-side", "64")
    assert code == 0 and out["task"] == "bench-preprocess"
    for kind, unit in (("images", "images_per_s"), ("audio", "audio_seconds_per_s"), ("video", "frames_per_s")):
        assert out[kind]["max_abs_diff"] <= 1e-4, kind
        assert out[kind]["omnifuse"][unit] > 0 and out[kind]["baseline"][unit] > 0 and out[kind]["ratio"] > 0
    assert out["ratio"] == out["images"]["ratio"]


def test_scaling_prints_both_tables(capsys) -> None:
    code, out = run(capsys, "scaling", "--size", "tiny", "--repeats", "1", "--images", "1,2", "--lengths", "16,32",
                    "--batch-size", "2")
    assert code == 0 and out["task"] == "bench-scaling"
    assert [row["images_per_sample"] for row in out["images"]] == [1, 2]
    assert [row["sequence_length"] for row in out["sequence"]] == [16, 32]
    assert [row["tokens"] for row in out["sequence"]] == [16, 32]
    assert out["images"][1]["tokens"] > out["images"][0]["tokens"]
    assert all(row["step_s"] > 0 for row in out["images"] + out["sequence"])
    assert set(out["fit"]) == {"images", "tokens"} and out["ratio"] > 0


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["train", "--size", "tiny", "--device", "cuda"], "no CUDA device"),
        (["train", "--size", "tiny", "--steps", "1"], "--steps"),
        (["serve", "--clients", "0"], "--clients must be at least 1"),
    ],
)
def test_unusable_requests_exit_2_with_a_reason(capsys, monkeypatch, argv, reason) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    code, out = run(capsys, *argv)
    assert code == 2 and reason in out["error"]


def test_bench_serve_runs_clients_against_a_real_server(capsys) -> None:
    code, out = run(capsys, "serve", "--clients", "2", "--requests", "2", "--max-tokens", "2", "--rounds", "1")
    assert code == 0 and out["task"] == "bench-serve" and out["errors"] == 0
    assert out["ratio"] > 0 and out["p99_s"] >= out["p50_s"] > 0
