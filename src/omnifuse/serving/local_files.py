"""Reading a local media file, only below the one folder the server owner allowed.

The path is resolved (`realpath`: symlinks and ``..``) and must stay inside the allowed folder; it is
then opened one component at a time from that folder with ``O_NOFOLLOW``, so a symlink swapped in after
the check cannot lead outside. Only regular files are read (FIFOs, devices and folders are refused, and
a FIFO cannot block the open), and the byte cap is checked on the size and again while reading.
"""

from __future__ import annotations

import errno
import os
import stat
import urllib.parse

from omnifuse.serving.fetch_policy import FetchError, FetchPolicy

_CHUNK = 1 << 20
# getattr: these flags are POSIX-only; without them (Windows) local files are refused (read_local_media).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | _CLOEXEC


def read_local_media(source: str, policy: FetchPolicy) -> bytes:
    """Read ``source`` (a path, relative to the allowed folder or absolute, or a ``file://`` URL).

    Example:
        >>> try:
        ...     read_local_media("/etc/passwd", FetchPolicy())
        ... except FetchError as error:
        ...     print(str(error)[:64])
        local media path '/etc/passwd' refused: local files are disabled
    """
    where = f"local media path {_short(source)}"
    if policy.allowed_local_path is None:
        raise FetchError(f"{where} refused: local files are disabled (allowed_local_path / --allowed-local-media-path)")
    if not _NOFOLLOW or os.open not in os.supports_dir_fd:
        raise FetchError(f"{where} refused: safe local file access needs a POSIX system (O_NOFOLLOW, dir_fd)")
    path = _path_of(source, where)
    root = os.path.realpath(policy.allowed_local_path)
    if not os.path.isdir(root):
        raise FetchError(f"{where}: the allowed local media folder does not exist")
    resolved = os.path.realpath(os.path.join(root, path))
    if os.path.commonpath([root, resolved]) != root or resolved == root:
        raise FetchError(f"{where} refused: it is outside the allowed local media folder")
    return _read_below(root, os.path.relpath(resolved, root).split(os.sep), policy.max_bytes, where)


def _path_of(source: str, where: str) -> str:
    if "\x00" in source:
        raise FetchError(f"{where} contains a NUL character")
    if source[:7].lower() != "file://":
        return source
    host, slash, rest = source[7:].partition("/")
    if host.lower() not in ("", "localhost") or not slash:
        raise FetchError(f"{where}: only file:///absolute/path URLs on this machine are accepted")
    try:
        path = urllib.parse.unquote("/" + rest, errors="strict")
    except UnicodeDecodeError as error:
        raise FetchError(f"{where}: its percent-escapes are not valid UTF-8") from error
    if "\x00" in path:
        raise FetchError(f"{where} contains a NUL character")
    return path


def _read_below(root: str, parts: list[str], max_bytes: int, where: str) -> bytes:
    fds = [os.open(root, _DIR_FLAGS)]
    try:
        for part in parts[:-1]:
            fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
        fds.append(os.open(parts[-1], _FILE_FLAGS, dir_fd=fds[-1]))
        return _read_regular_file(fds[-1], max_bytes, where)
    except OSError as error:
        raise FetchError(f"{where}: {_os_reason(error)}") from error
    finally:
        for fd in fds:
            os.close(fd)


def _read_regular_file(fd: int, max_bytes: int, where: str) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, device or socket)"
        raise FetchError(f"{where} refused: it is {kind}")
    if info.st_size > max_bytes:
        raise FetchError(f"{where} is {info.st_size} bytes, over the limit of {max_bytes} (max_bytes)")
    os.set_blocking(fd, True)
    chunks, total = [], 0
    while chunk := os.read(fd, _CHUNK):
        total += len(chunk)
        if total > max_bytes:  # the file grew after fstat
            raise FetchError(f"{where} is over the limit of {max_bytes} bytes (max_bytes)")
        chunks.append(chunk)
    if not total:
        raise FetchError(f"{where} is empty (0 bytes)")
    return b"".join(chunks)


def _os_reason(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "file not found"
    if error.errno == errno.ELOOP:
        return "the path changed while it was opened (a symlink appeared); refused"
    if error.errno == errno.ENOTDIR:  # O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR too
        return "a part of the path is not a folder (or turned into a symlink); refused"
    return f"cannot read it ({error.strerror})"


def _short(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


__all__ = ["read_local_media"]
