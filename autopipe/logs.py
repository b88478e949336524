"""Console and file logging: rich on the terminal, plain lines in `<project>/logs/autopipe.log`."""

import logging
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

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


def log_to_file(path: Path) -> None:
    """Keep a full debug log of the run next to its events."""
    path.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.setLevel(logging.DEBUG)
    handler = logging.FileHandler(path)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    LOGGER.handlers = [h for h in LOGGER.handlers if not isinstance(h, logging.FileHandler)] + [handler]
