"""Console and file logging: rich on the terminal, plain lines in `<project>/logs/autopipe.log`."""

import contextlib
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from autopipe.faults import writing

LOGGER = logging.getLogger("autopipe")
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def log_to_console(verbose: bool = False, console: Console | None = None) -> None:
    """Show progress on stderr; `verbose` adds every event appended."""
    LOGGER.setLevel(logging.DEBUG)
    handler = RichHandler(
        console=console or Console(stderr=True),
        show_path=False,
        markup=True,
        rich_tracebacks=False,
        level=logging.DEBUG if verbose else logging.INFO,
    )
    LOGGER.handlers = [h for h in LOGGER.handlers if not isinstance(h, RichHandler)] + [handler]
    LOGGER.propagate = False
    # Parsl logs to its own file under logs/parsl; pyace configures the root logger on import, so stop
    # Parsl's debug chatter from reaching the terminal through it.
    logging.getLogger("parsl").propagate = False
    logging.getLogger("transitions").setLevel(logging.WARNING)


class ProjectLogHandler(logging.FileHandler):
    """The file log of a run; a full disk or a read-only directory stops it, with one warning, not a
    traceback per record: the event log, not this file, is what a run needs to go on or resume."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        self.failed = True
        error = sys.exc_info()[1]
        stream, self.stream = self.stream, None  # its unwritten buffer would fail again on close
        with contextlib.suppress(OSError, AttributeError):  # AttributeError: it never opened
            stream.close()
        reason = getattr(error, "strerror", None) or error
        LOGGER.warning("cannot write %s (%s): the file log stops here; the run goes on",
                       self.baseFilename, reason)


def log_to_file(path: Path) -> None:
    """Keep a full debug log of the run next to its events."""
    # Parsl's own file log (logs/parsl) meets the same full disk: no "--- Logging error ---" from it either.
    logging.raiseExceptions = False
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = ProjectLogHandler(path)
    LOGGER.setLevel(logging.DEBUG)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    LOGGER.handlers = [h for h in LOGGER.handlers if not isinstance(h, logging.FileHandler)] + [handler]
    # A task that fails while Parsl shuts down after the run stopped on an error makes Parsl's retry callback
    # fail ("cannot schedule new futures after shutdown"); concurrent.futures logs that with a traceback,
    # which belongs in the file, not on the terminal through the root logger pyace configures.
    callbacks = logging.getLogger("concurrent.futures")
    callbacks.handlers, callbacks.propagate = [handler], False
