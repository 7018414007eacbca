"""`omnifuse bench preprocess`: omnifuse's media processing against transformers' processors, same inputs.

- images: mixed-size JPEG/PNG bytes -> normalized pixels, omnifuse's image path (safe loading +
  `image_to_crops`) vs PIL decoding + `SiglipImageProcessorPil` (its torchvision "fast" variant is
  timed too where torchvision is installed);
- audio: mono clips of 1 to 30 s -> Whisper log-mel, `audio_to_windows` vs `WhisperFeatureExtractor`;
- video: sampled frames -> pixels, `frames_to_tensor` vs the SigLIP processor on the same frames.

Outputs must agree with the baseline (max abs difference under TOLERANCE) or the benchmark fails.

Example:
    >>> run_preprocess_bench(PreprocessOptions(size="tiny"))["images"]["max_abs_diff"] <= TOLERANCE  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from transformers import WhisperFeatureExtractor

from omnifuse.bench.common import BenchError, alternate, log, median, rounded, set_threads
from omnifuse.bench.workload import random_image
from omnifuse.processing.audio import AudioSettings, audio_to_windows
from omnifuse.processing.image import ImageSettings, image_to_crops, to_transformers_image_processor
from omnifuse.processing.media import load_image
from omnifuse.processing.video import frames_to_tensor

TOLERANCE = 1e-4
SAMPLING_RATE = 16000
COUNTS = {"tiny": (6, 3, 8), "small": (48, 16, 64), "large": (96, 32, 128)}  # images, audio clips, video frames


@dataclass
class PreprocessOptions:
    size: str = "small"
    image_side: int = 224
    repeats: int = 5
    seed: int = 0
    threads: int | None = 1  # as in a DataLoader worker, where torch runs one thread


class OutputMismatch(AssertionError):
    """omnifuse's processed media differ from the baseline's beyond the tolerance."""


def encoded_images(count: int, seed: int) -> list[bytes]:
    """Random-pixel images of mixed sizes, alternately JPEG and PNG."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        random_image(rng, 64, 1024).save(buffer, format="JPEG" if i % 2 == 0 else "PNG")
        out.append(buffer.getvalue())
    return out


def audio_clips(count: int, seed: int) -> list[np.ndarray]:
    """Mono float32 clips of 1 to 30 seconds: tones plus noise."""
    rng = np.random.default_rng(seed)
    clips = []
    for seconds in np.linspace(1, 30, count):
        t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)
        clips.append(tone.astype(np.float32))
    return clips


def bench_images(options: PreprocessOptions, count: int) -> dict:
    settings = ImageSettings(size=options.image_side)
    images = encoded_images(count, options.seed)
    reference = to_transformers_image_processor(settings)

    def ours() -> list[torch.Tensor]:
        return [image_to_crops(load_image(data), settings) for data in images]

    def theirs(processor=reference) -> list[torch.Tensor]:
        return [processor(images=Image.open(io.BytesIO(data)), return_tensors="pt")["pixel_values"] for data in images]

    runs = {"omnifuse": ours, "baseline": theirs}
    fast = fast_siglip_processor(settings)
    if fast is not None:
        runs["baseline_fast"] = lambda: theirs(fast)
    diff = max_abs_diff(ours(), theirs())
    times = alternate(runs, repeats=options.repeats, warmup=1)
    return throughput(times, count, "images_per_s") | {
        "max_abs_diff": diff, "images": count, "fast_variant": "timed" if fast else "absent (needs torchvision)",
        "baseline_name": "PIL decode + transformers SiglipImageProcessorPil"}


def fast_siglip_processor(settings: ImageSettings):
    """transformers' torchvision-backed SiglipImageProcessor, or None where torchvision is missing."""
    try:
        import torchvision  # noqa: F401
        from transformers import SiglipImageProcessor
    except ImportError:
        return None
    pil = to_transformers_image_processor(settings)
    return SiglipImageProcessor(size=pil.size, resample=pil.resample, image_mean=pil.image_mean,
                                image_std=pil.image_std)


def bench_audio(options: PreprocessOptions, count: int) -> dict:
    settings = AudioSettings("log_mel", sampling_rate=SAMPLING_RATE, n_mels=80)
    clips = audio_clips(count, options.seed)
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=SAMPLING_RATE)

    def ours() -> list[torch.Tensor]:
        return [audio_to_windows(clip, settings)[0] for clip in clips]

    def theirs() -> list[torch.Tensor]:
        return [extractor(clip, sampling_rate=SAMPLING_RATE, return_tensors="pt")["input_features"] for clip in clips]

    diff = max_abs_diff(ours(), theirs())
    times = alternate({"omnifuse": ours, "baseline": theirs}, repeats=options.repeats, warmup=1)
    seconds = sum(c.size for c in clips) / SAMPLING_RATE
    return throughput(times, seconds, "audio_seconds_per_s") | {
        "max_abs_diff": diff, "clips": count, "audio_seconds": rounded(seconds),
        "baseline_name": "transformers WhisperFeatureExtractor (80 mels, 30 s windows)"}


def bench_video(options: PreprocessOptions, count: int) -> dict:
    settings = ImageSettings(size=options.image_side)
    rng = np.random.default_rng(options.seed + 1)
    frames = [random_image(rng, 360, 361).resize((640, 360)) for _ in range(count)]
    reference = to_transformers_image_processor(settings)

    def ours() -> list[torch.Tensor]:
        return [frames_to_tensor(frames, settings)]

    def theirs() -> list[torch.Tensor]:
        return [reference(images=frames, return_tensors="pt")["pixel_values"]]

    diff = max_abs_diff(ours(), theirs())
    times = alternate({"omnifuse": ours, "baseline": theirs}, repeats=options.repeats, warmup=1)
    return throughput(times, count, "frames_per_s") | {
        "max_abs_diff": diff, "frames": count, "baseline_name": "transformers SiglipImageProcessorPil on the frames"}


def max_abs_diff(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    """Largest elementwise difference; a shape mismatch or a difference over TOLERANCE fails the benchmark."""
    worst = 0.0
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a.shape != b.shape:
            raise OutputMismatch(f"item {index}: omnifuse shape {tuple(a.shape)} vs baseline {tuple(b.shape)}")
        worst = max(worst, float((a.float() - b.float()).abs().max()))
    if worst > TOLERANCE:
        raise OutputMismatch(f"outputs differ from the baseline by {worst:.3g} (tolerance {TOLERANCE})")
    return rounded(worst, 3)


def throughput(times: dict[str, list[float]], amount: float, unit: str) -> dict:
    """Per-system amount per second (from the median time) and omnifuse's ratio to each baseline."""
    out = {name: {unit: rounded(amount / median(values)), "median_s": rounded(median(values)),
                  "best_s": rounded(min(values))} for name, values in times.items()}
    out["ratio"] = rounded(median(times["baseline"]) / median(times["omnifuse"]), 3)
    if "baseline_fast" in times:
        out["ratio_fast"] = rounded(median(times["baseline_fast"]) / median(times["omnifuse"]), 3)
    return out


def run_preprocess_bench(options: PreprocessOptions) -> dict:
    """Images, audio and video, each against its transformers baseline; one dict (the JSON line)."""
    if options.size not in COUNTS:
        raise BenchError(f"--size must be one of {', '.join(COUNTS)}, got {options.size!r}")
    if options.repeats < 1 or options.image_side < 1:
        raise BenchError("--repeats and --image-side must be positive")
    threads = set_threads(options.threads)
    images, clips, frames = COUNTS[options.size]
    log(f"images: {images} mixed-size JPEG/PNG")
    image_figures = bench_images(options, images)
    log(f"audio: {clips} clips of 1-30 s")
    audio_figures = bench_audio(options, clips)
    log(f"video: {frames} frames")
    video_figures = bench_video(options, frames)
    return {
        "task": "bench-preprocess",
        "ratio": image_figures["ratio"],
        "audio_ratio": audio_figures["ratio"],
        "video_ratio": video_figures["ratio"],
        "images": image_figures,
        "audio": audio_figures,
        "video": video_figures,
        "threads": threads,
        "options": asdict(options),
    }
