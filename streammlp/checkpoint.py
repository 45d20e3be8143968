"""Model files: a model's ``state()`` in an ``.npz``, written atomically, and read back.

Each array is stored as an ``.npy`` member under its place in the state
(``params``, ``members.2.params``), every other value as JSON in the ``meta``
member: no pickle. This module knows nothing of models; ``network.read`` builds
one from the state.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
import zlib

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"  # how an .npz (a zip archive) starts


def write(path: str | os.PathLike, state: dict, extra: dict | None = None) -> None:
    """Save ``state`` (and ``extra``, a dict of JSON-able values and arrays, under ``"extra"``)
    to ``path``.

    Atomic and durable: a temporary file is written and fsynced, renamed over
    ``path``, then the directory is fsynced, so that the rename itself survives a
    power loss. A crash leaves either the old file or the new one, never half of
    one. ``OSError`` names ``path`` (not the temporary file) if it cannot be written.
    """
    arrays: dict[str, np.ndarray] = {}
    meta = _split({**state, "extra": extra or {}}, arrays)
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, meta=np.array(json.dumps(meta)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # what was written of it, if anything
        error = type(e)(f"cannot write {path}: {e.strerror or e}")  # str() without "[Errno n]"
        error.errno = e.errno
        raise error from e
    _fsync_directory(os.path.dirname(path) or ".")


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX: the entry lives in the directory)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: str | os.PathLike) -> dict:
    """The state written by :func:`write`, its arrays back in place (``OSError`` or
    ``ValueError``/``KeyError`` if the file is not one).

    A damaged file (truncated, a bad CRC) or one that is not an ``.npz`` at
    all raises ``ValueError`` saying so, not numpy's or zipfile's own words.
    """
    with open(path, "rb") as f:
        if f.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ValueError("not an .npz file (it does not start as a zip archive does)")
    try:
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data["meta"]))
            for name in data.files:
                if name != "meta":
                    _put(state, name, data[name])
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ValueError(f"a damaged .npz file ({e})") from None
    return state


def _split(value, arrays: dict, place: tuple = ()):
    """``value`` without its arrays, which go into ``arrays`` under their dotted place."""
    if isinstance(value, dict):
        meta = {}
        for key, v in value.items():
            if isinstance(v, np.ndarray):
                arrays[".".join(place + (key,))] = v
            else:
                meta[key] = _split(v, arrays, place + (key,))
        return meta
    if isinstance(value, list):
        return [_split(v, arrays, place + (str(i),)) for i, v in enumerate(value)]
    return value


def _put(state, place: str, array: np.ndarray) -> None:
    """Put ``array`` back at its dotted ``place`` in ``state`` (the inverse of :func:`_split`)."""
    *parents, last = place.split(".")
    for key in parents:
        state = state[int(key)] if isinstance(state, list) else state[key]
    if isinstance(state, list):
        state[int(last)] = array
    else:
        state[last] = array
