"""Writing files so that a crash never leaves half of one behind (used from lesson 02 on).

Every writer in ``course_lib`` goes through these helpers: a temporary name in the same
folder, then one ``os.replace``, which is atomic on POSIX and Windows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def new_temp_dir(final: str | os.PathLike) -> Path:
    """An empty hidden folder beside ``final``, on the same file system, to fill and swap in."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))


def replace_dir(filled: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move the complete folder ``filled`` to ``final``, replacing an older one.

    ``os.replace`` cannot overwrite a non-empty folder, so the old one is first renamed to
    ``.<name>.old``: at every moment a complete copy exists under one of the two names
    (:func:`existing_dir` finds it).
    """
    filled, final = Path(filled), Path(final)
    old = final.parent / f".{final.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(filled, final)
    if old.exists():
        shutil.rmtree(old)


def existing_dir(final: str | os.PathLike) -> Path | None:
    """``final`` if it is a folder, else the complete old copy a crashed swap left, else None."""
    final = Path(final)
    if final.is_dir():
        return final
    old = final.parent / f".{final.name}.old"
    return old if old.is_dir() else None
