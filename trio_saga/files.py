"""Writing the files a run produces (traces, diagrams, reports), for every command.

Owns the one way output files are written (UTF-8, "\n" line ends so a trace is the same bytes
on every platform) and checked, so that a path that cannot be written is a one-line SagaError.
It must never decide what goes into a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SagaError


def check_writable(path: str | Path) -> None:
    """Fail now, before a run, if `path` cannot be written: its directory must exist and be
    writable."""
    target = Path(path)
    parent = target.resolve().parent
    if not parent.is_dir():
        raise SagaError(f"cannot write {path}: no directory {parent}")
    if target.is_dir():
        raise SagaError(f"cannot write {path}: it is a directory")
    if not os.access(parent, os.W_OK):
        raise SagaError(f"cannot write {path}: directory {parent} is not writable")
    # Permission bits are not the whole story (root may write anywhere, /proc refuses new
    # files whatever they say): try it, and leave nothing behind.
    existed = target.exists()
    try:
        with target.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise SagaError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not existed:
        target.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    try:
        with Path(path).open("w", encoding="utf-8", newline="\n") as out:
            out.write(text)
    except OSError as exc:
        raise SagaError(f"cannot write {path}: {exc.strerror or exc}") from None
