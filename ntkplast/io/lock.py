"""One writer per folder: an exclusive lock that a killed process cannot leave stuck.

:func:`folder_lock` is held by every verb while it writes a folder (``train`` and ``import``
their run folders, ``analyze`` its analysis folder, ``figures`` its figure folder, ``sweep`` its
sweep folder). The lock is ``fcntl.flock`` on ``FOLDER/.ntkplast.lock``, which holds the
holder's pid and verb: a second writer fails at once with one line naming that pid, and a lock
left by a killed process is free (the kernel drops a dead process's locks), so the next writer
takes it over without any timeout or guess. The lock file is removed when the lock is released;
a writer that finds the file replaced after locking it locks the new one, so two writers can
never both hold the lock. Folders the lock had to create are removed again if the block fails
while they are still empty, so a refused command leaves the file system as it found it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ntkplast.errors import NtkplastError

__all__ = ["LOCK_NAME", "folder_lock"]

LOCK_NAME = ".ntkplast.lock"


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the folders created, outermost first."""
    missing = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    if not missing and not folder.is_dir():
        raise NtkplastError(f"{folder} exists and is not a folder; choose another output path")
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if not d.is_dir():
                _remove_empty(created)
                raise NtkplastError(f"{d} exists and is not a folder; choose another output "
                                    f"path") from None
        except OSError as e:
            _remove_empty(created)
            raise NtkplastError(f"cannot create the folder {d} ({e.strerror or e}); a parent "
                                f"is a file, read-only or missing: choose another output "
                                f"path") from None
        else:
            created.append(d)
    return created


def _remove_empty(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            return


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if text and text[0].isdigit():
        return f"pid {text[0]}" + (f", ntkplast {' '.join(text[1:2])}" if len(text) > 1 else "")
    return "pid unknown: it is starting"


def _acquire(folder: Path, verb: str) -> int:
    path = folder / LOCK_NAME
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise NtkplastError(f"cannot write into {folder} ({e.strerror or e}); make it "
                                f"writable or choose another output folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise NtkplastError(f"{folder} is being written by another ntkplast process "
                                f"({holder}); wait for it to finish, or choose another "
                                f"folder") from None
        except OSError as e:
            os.close(fd)
            raise NtkplastError(f"cannot lock {path} ({e.strerror or e}); the file system "
                                f"may not support locks: choose a local output folder") from None
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            now = None
        mine = os.fstat(fd)
        if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {verb}\n".encode(), 0)
            return fd
        os.close(fd)  # the holder released and removed it meanwhile: lock the current file
    raise NtkplastError(f"cannot lock {path}: it keeps being replaced; is another program "
                        f"deleting files in {folder}?")


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, verb: str) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``folder`` (created with its parents if missing).

    Args:
      folder: the folder about to be written.
      verb: what writes it (``"train"``, ``"analyze"``, …), shown to a second writer.

    Raises:
      NtkplastError: another live process holds the lock (the message names its pid), or the
        folder cannot be created or written (a file in the way, no permission).
    """
    folder = Path(folder)
    created = _make_folder(folder)
    try:
        fd = _acquire(folder, verb)
    except BaseException:
        _remove_empty(created)
        raise
    ok = False
    try:
        yield folder
        ok = True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(folder / LOCK_NAME)  # still holding it: no one else can own this file
        os.close(fd)
        if not ok:
            _remove_empty(created)
