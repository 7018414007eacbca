"""Audio questions of the built-in benchmark: 1 s clips of sine tones and beeps at 16 kHz.

Pitch classes use frequency bands an octave or more apart; beeps are separated by >= 80 ms of
silence; "longer" pairs differ >= 2.2x in duration and "louder" pairs >= 2.5x (8 dB) in
amplitude, so every answer is unambiguous by construction.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnifuse.benchmark.common import SynthConfig, SyntheticRecord, choose, uniform

PITCH_BANDS: dict[str, tuple[float, float]] = {
    "low": (200.0, 350.0),
    "mid": (600.0, 900.0),
    "high": (1500.0, 2500.0),
}
PITCHES: tuple[str, ...] = tuple(PITCH_BANDS)
BEEP_COUNTS: tuple[str, ...] = ("1", "2", "3", "4")
ORDINALS: tuple[str, ...] = ("first", "second")
# Raised-cosine fades avoid clicks, which would add broadband energy and blur the pitch.
RAMP_SECONDS = 0.005
# Keep tones away from the clip edges so a cropping processor never cuts one.
EDGE_SECONDS = 0.02

PITCH_TEMPLATES = ("Is the tone low, mid or high?", "What is the pitch of the tone: low, mid or high?")
BEEP_TEMPLATES = ("How many beeps are there?", "How many beeps do you hear?", "Count the beeps.")
LONGER_TEMPLATES = (
    "Which tone is longer, the first or the second?",
    "Which of the two tones lasts longer: first or second?",
)
LOUDER_TEMPLATES = (
    "Which tone is louder, the first or the second?",
    "Which of the two tones is louder: first or second?",
)


@dataclass(frozen=True)
class Tone:
    """A sine tone: frequency in Hz, start and duration in seconds, peak amplitude in [0, 1]."""

    freq: float
    start: float
    duration: float
    amplitude: float

    def as_fact(self) -> dict[str, float]:
        return {
            "freq": round(self.freq, 3),
            "start": round(self.start, 5),
            "duration": round(self.duration, 5),
            "amplitude": round(self.amplitude, 5),
        }


def pitch_class(freq: float) -> str | None:
    """The pitch class whose band holds ``freq`` (None between bands).

    Example:
        >>> pitch_class(700.0), pitch_class(450.0)
        ('mid', None)
    """
    return next((name for name, (low, high) in PITCH_BANDS.items() if low <= freq <= high), None)


def _tone_wave(tone: Tone, sample_rate: int) -> np.ndarray:
    length = round(tone.duration * sample_rate)
    wave_ = tone.amplitude * np.sin(2 * np.pi * tone.freq * np.arange(length) / sample_rate)
    ramp = min(round(RAMP_SECONDS * sample_rate), length // 2)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    wave_[:ramp] *= fade
    wave_[length - ramp :] *= fade[::-1]
    return wave_


def render_tones(tones: list[Tone], cfg: SynthConfig) -> np.ndarray:
    """A float32 mono clip of ``cfg.clip_samples`` samples with ``tones`` added at their start times.

    Example:
        >>> clip = render_tones([Tone(440.0, 0.1, 0.2, 0.5)], SynthConfig())
        >>> clip.shape, clip.dtype, round(float(abs(clip).max()), 2)
        ((16000,), dtype('float32'), 0.5)
    """
    clip = np.zeros(cfg.clip_samples, dtype=np.float64)
    for tone in tones:
        start = round(tone.start * cfg.sample_rate)
        samples = _tone_wave(tone, cfg.sample_rate)
        clip[start : start + len(samples)] += samples[: cfg.clip_samples - start]
    return clip.astype(np.float32)


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write ``waveform`` (floats in [-1, 1]) as 16-bit mono PCM WAV with the stdlib ``wave`` module."""
    pcm = np.clip(np.round(np.asarray(waveform, dtype=np.float64) * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def _random_freq(rng: np.random.Generator) -> float:
    return uniform(rng, *PITCH_BANDS[choose(rng, PITCHES)])


def _start_for(rng: np.random.Generator, total: float, cfg: SynthConfig) -> float:
    """A random onset that keeps ``total`` seconds of sound inside the clip, away from the edges."""
    return uniform(rng, EDGE_SECONDS, cfg.clip_seconds - total - EDGE_SECONDS)


def pitch_tone(rng: np.random.Generator, pitch: str, cfg: SynthConfig) -> Tone:
    """One 0.4-0.8 s tone whose frequency lies in ``pitch``'s band."""
    duration = uniform(rng, 0.4, 0.8)
    return Tone(uniform(rng, *PITCH_BANDS[pitch]), _start_for(rng, duration, cfg), duration, uniform(rng, 0.3, 0.8))


def beep_train(rng: np.random.Generator, count: int, cfg: SynthConfig) -> list[Tone]:
    """``count`` beeps of 80-120 ms at one random frequency, with 80-140 ms silences between."""
    freq, amplitude = _random_freq(rng), uniform(rng, 0.3, 0.8)
    durations = [uniform(rng, 0.08, 0.12) for _ in range(count)]
    gaps = [uniform(rng, 0.08, 0.14) for _ in range(count - 1)]
    time = _start_for(rng, sum(durations) + sum(gaps), cfg)
    tones = []
    for i, duration in enumerate(durations):
        tones.append(Tone(freq, time, duration, amplitude))
        time += duration + (gaps[i] if i < len(gaps) else 0.0)
    return tones


def _tone_pair(
    rng: np.random.Generator,
    durations: tuple[float, float],
    amplitudes: tuple[float, float],
    cfg: SynthConfig,
) -> list[Tone]:
    """Two tones at one random frequency (so only the asked property differs), 0.1-0.2 s apart."""
    freq, gap = _random_freq(rng), uniform(rng, 0.1, 0.2)
    first_start = _start_for(rng, sum(durations) + gap, cfg)
    return [
        Tone(freq, first_start, durations[0], amplitudes[0]),
        Tone(freq, first_start + durations[0] + gap, durations[1], amplitudes[1]),
    ]


def _audio_record(name: str, question: str, answer: str, tones: list[Tone], cfg: SynthConfig) -> SyntheticRecord:
    clip = render_tones(tones, cfg)
    facts = {"tones": [t.as_fact() for t in tones], "sample_rate": cfg.sample_rate}
    return SyntheticRecord(name, question, answer, [("audio", (clip, cfg.sample_rate))], facts)


def build_pitch(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "Is the tone low, mid or high?"."""
    pitch = choose(rng, PITCHES)
    tone = pitch_tone(rng, pitch, cfg)
    return _audio_record("audio_pitch", choose(rng, PITCH_TEMPLATES), pitch, [tone], cfg)


def build_beeps(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "How many beeps are there?": 1 to 4, drawn uniformly."""
    count = int(rng.integers(1, 5))
    tones = beep_train(rng, count, cfg)
    return _audio_record("audio_beeps", choose(rng, BEEP_TEMPLATES), str(count), tones, cfg)


def build_longer(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "Which tone is longer?": the long one lasts 2.2-3x the short one, loudness about equal."""
    answer = choose(rng, ORDINALS)
    short = uniform(rng, 0.1, 0.15)
    long_ = short * uniform(rng, 2.2, 3.0)
    durations = (long_, short) if answer == "first" else (short, long_)
    tones = _tone_pair(rng, durations, (uniform(rng, 0.4, 0.6), uniform(rng, 0.4, 0.6)), cfg)
    return _audio_record("audio_longer", choose(rng, LONGER_TEMPLATES), answer, tones, cfg)


def build_louder(rng: np.random.Generator, cfg: SynthConfig) -> SyntheticRecord:
    """ "Which tone is louder?": amplitudes differ 2.5-4x (8-12 dB), durations within 1.5x."""
    answer = choose(rng, ORDINALS)
    loud = uniform(rng, 0.5, 0.8)
    quiet = loud / uniform(rng, 2.5, 4.0)
    amplitudes = (loud, quiet) if answer == "first" else (quiet, loud)
    tones = _tone_pair(rng, (uniform(rng, 0.2, 0.3), uniform(rng, 0.2, 0.3)), amplitudes, cfg)
    return _audio_record("audio_louder", choose(rng, LOUDER_TEMPLATES), answer, tones, cfg)
