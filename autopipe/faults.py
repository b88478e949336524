"""Faults of the machine, not of the input or the code: a full disk, a read-only or forbidden directory.

Write sites that know their file wrap the write in `writing(path)`: the OSError or SQLite error such a fault
raises becomes one `EnvironmentFault` naming that file, saying that nothing finished is lost and what to do
before running the same command again. The CLI's boundary maps an OSError that escaped unwrapped with
`environment_fault`, if the error names its file. Every other error stays what it is.
"""

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autopipe.errors import EnvironmentFault

#: errno values of a file system with no room left.
FULL = {errno.ENOSPC, errno.EDQUOT}
#: errno values of a directory this process may not write to.
LOCKED = {errno.EROFS, errno.EACCES, errno.EPERM}
#: The errno each SQLite primary result code for these faults stands for (it reports ENOSPC as SQLITE_FULL).
SQLITE_ERRNO = {13: errno.ENOSPC, 8: errno.EROFS}
SQLITE_CANTOPEN = 14


def environment_fault(err: BaseException, path: str | Path | None = None) -> EnvironmentFault | None:
    """The named fault for `err` writing `path` (default: the file the OSError names), or None if `err` is
    not a full disk or a refused write, or no file is known to name."""
    target = path or getattr(err, "filename", None)
    if target is None or not isinstance(err, OSError | sqlite3.Error):
        return None
    code = _errno(err, Path(target))
    if code not in FULL | LOCKED:
        return None
    reason = getattr(err, "strerror", None) or f"{os.strerror(code)} (SQLite: {err})"
    return EnvironmentFault(_message(Path(target), reason, full=code in FULL))


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Do the block's writes to `path`; a full disk or a refused write there is an `EnvironmentFault`.

    >>> with writing(project / "system.json"):  # doctest: +SKIP
    ...     (project / "system.json").write_text(text)
    """
    try:
        yield
    except (OSError, sqlite3.Error) as err:
        fault = environment_fault(err, path)
        if fault is None:
            raise
        raise fault from err


def _errno(err: OSError | sqlite3.Error, path: Path) -> int | None:
    """The errno behind `err`: an OSError's own, or the one its SQLite result code stands for."""
    if isinstance(err, OSError):
        return err.errno
    code = (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF
    if code == SQLITE_CANTOPEN and not os.access(path.parent, os.W_OK):
        # a WAL log cannot even be read where SQLite may not create its -shm file
        return errno.EROFS if os.statvfs(path.parent).f_flag & os.ST_RDONLY else errno.EACCES
    return SQLITE_ERRNO.get(code)


def _message(path: Path, reason: str, full: bool) -> str:
    if full:
        todo = f"Free space on the file system that holds {path.parent}"
    else:
        todo = f"Make {path.parent} writable (or copy the project to a writable place and pass --workdir)"
    return (
        f"Cannot write {path}: {reason}. Nothing already finished is lost: the event log keeps every step "
        f"that ended. {todo}, then run the same command again: a run resumes where it stopped."
    )
