"""Where a command may write a file the user names, and how it writes it.

A path on the command line can point anywhere: at a project's event log (its checkpoint), at a device node,
through a symlink. So every command that writes a user-named file (`status --html`, `export`, `init`) asks
`check_output` first, before anything is written, and it refuses (UsageError, exit 2) a target that

(a) lies inside a project directory, except under the command's own place there (`report/` for status),
(b) exists and is not a regular file (a directory, device, FIFO or socket; a symlink is judged by what it
    points to, and the file it points to is what gets written),
(c) exists and is not the command's own earlier output: a file carrying its marker, or one in its own place,
(d) would go into a directory that is missing (only the command's own place is created), is not a
    directory, or is not writable.

`--force` overrides (c) only. `replace_atomically` then writes the file in one step.
"""

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from autopipe.errors import UsageError
from autopipe.project_files import is_project

#: In the <head> of every status report: what lets `status --html` replace a report it wrote before.
REPORT_MARKER = '<meta name="generator" content="mlip-autopipe status">'
#: The `written_by` info of an export's first frame (its comment line), for the same purpose.
EXPORT_WRITER = "mlip-autopipe export"
#: How far into a file a marker is looked for.
MARKER_BYTES = 4096


@dataclass(frozen=True)
class Output:
    """What one command writes, as the rule and its messages need it."""

    command: str  #: as typed, e.g. "status --html"
    what: str  #: in messages, e.g. "the report"
    place: str | None = None  #: the project entry it writes into ("report"); None: nowhere inside a project
    marker: str | None = None  #: in the first MARKER_BYTES of each file it writes; None: none is its own


REPORT = Output("status --html", "the report", place="report", marker=REPORT_MARKER)
EXPORT = Output("export", "the export", marker=f'written_by="{EXPORT_WRITER}"')
EXAMPLE_INPUT = Output("init", "the input")

_KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
}


def check_output(path: Path, output: Output, force: bool = False) -> Path:
    """The file to write for `path` (symlinks followed); UsageError if the rule (module docstring) forbids it.

    Only looks: nothing is created, and a FIFO is never opened.
    """
    target = _resolve(path)
    for where in dict.fromkeys((Path(os.path.abspath(path)), target)):  # as given, and as resolved
        _refuse_inside_project(path, where, output)
    mode = _mode(path, target)
    if mode is not None and not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "special file")
        raise _refusal(path, target, f"it is a {kind}, not a regular file. Name a file to create or replace.")
    own_place = _own_place(target, output)
    if mode is not None and not (force or own_place or _carries_marker(target, output.marker)):
        written = "" if output.marker is None else f" and is not a file `mlip-auto {output.command}` wrote"
        raise _refusal(path, target, f"it already exists{written}; pass --force to overwrite it.")
    _check_directory(path, target, creatable=own_place == target.parent)
    return target


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python 3.11)
        raise UsageError(f"refusing to write {path}: it cannot be resolved ({err}).") from None


def _refuse_inside_project(path: Path, where: Path, output: Output) -> None:
    """UsageError if `where` is inside a project directory but not under `output`'s place there."""
    for directory in where.parents:
        if is_project(directory) and not _under_place(where, directory, output.place):
            allowed = f", or under its {output.place}/ directory" if output.place else ""
            raise _refusal(
                path, where,
                f"it is inside the project {directory}, whose files are the run's checkpoint. Write "
                f"{output.what} outside the project directory{allowed}.",
            )  # fmt: skip


def _mode(path: Path, target: Path) -> int | None:
    """`target`'s file type and mode, None where nothing is there."""
    try:
        return os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise _refusal(path, target, f"it cannot be examined ({err.strerror}).") from None


def _own_place(target: Path, output: Output) -> Path | None:
    """The `<project>/<place>` directory `target` lies under, if any: what is there is the command's own."""
    for directory in target.parents:
        if output.place and is_project(directory) and _under_place(target, directory, output.place):
            return directory / output.place
    return None


def _under_place(where: Path, project: Path, place: str | None) -> bool:
    """Whether `where` lies under `project`'s `place` (not the place itself: that stays a directory)."""
    parts = where.relative_to(project).parts
    return place is not None and len(parts) > 1 and parts[0] == place


def _carries_marker(target: Path, marker: str | None) -> bool:
    """Whether the regular file `target` starts with a command's marker (opened non-blocking, just in case
    it was swapped for a FIFO since it was examined)."""
    if marker is None:
        return False
    try:
        descriptor = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return marker.encode() in os.read(descriptor, MARKER_BYTES)
    finally:
        os.close(descriptor)


def _check_directory(path: Path, target: Path, creatable: bool) -> None:
    """UsageError unless `target` can be created or replaced in its directory (a missing one only if
    `creatable`: the command's own place, which the writer makes)."""
    parent = target.parent
    if not parent.exists():
        if creatable:
            return
        reason = f"the directory {parent} does not exist. Create it, or name a file in an existing directory."
    elif not parent.is_dir():
        reason = f"{parent} is not a directory."
    elif not os.access(parent, os.W_OK | os.X_OK):
        reason = f"the directory {parent} is not writable."
    else:
        return
    raise _refusal(path, target, reason)


def _refusal(path: Path, target: Path, reason: str) -> UsageError:
    """The one-paragraph refusal, naming what a symlink points to where that is not the path given."""
    shown = str(path) if target == Path(os.path.abspath(path)) else f"{path} (which points to {target})"
    return UsageError(f"refusing to write {shown}: {reason}")


@contextmanager
def replace_atomically(path: Path) -> Iterator[TextIO]:
    """A text handle on a new file that replaces `path` when the block ends without error: a reader never
    sees half a file, a failure leaves `path` as it was, and two writers at once do not collide. The
    temporary file is created exclusively, so nothing already at its name (a link) is written through.
    Creates `path`'s directory if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "x", encoding="utf-8") as handle:  # "x": fails rather than follow a link there
        try:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
