"""One exception hierarchy for the whole package; the CLI maps each branch to an exit code.

`ConfigError` and `UsageError` are the user's to fix (exit 2); `RunError` and its children are
run-time failures (exit 1). Apps may raise these too: this module is a leaf that imports nothing.
"""


class AutopipeError(Exception):
    """Root of every error mlip-autopipe raises on purpose."""

    exit_code = 1


class ConfigError(AutopipeError):
    """The input (YAML, site config, command-line value) is wrong; the message names the key."""

    exit_code = 2


class UsageError(AutopipeError):
    """The command cannot act on what it was given (e.g. a second concurrent run of one project)."""

    exit_code = 2


class RunError(AutopipeError):
    """A run-time failure: the run stops, the log keeps everything finished so far."""


class EventLogError(RunError):
    """The event log is damaged or cannot be written."""


class EnvironmentFault(RunError):
    """The machine refused a write (a full disk, a read-only or forbidden directory): the input and the
    command are right, and the same command succeeds once the cause is removed (autopipe/faults.py)."""


class DFTError(RunError):
    """A DFT calculation could not be set up or run (not a failed label: those are results)."""


class TrainingError(RunError):
    """A potential could not be fitted."""


class ExplorationError(RunError):
    """Molecular dynamics with the current potential could not be run."""


class SelectionError(RunError):
    """Candidates could not be ranked or cut down for DFT (e.g. the potential or active set is missing)."""


class AssessmentError(RunError):
    """The assessment could not be made (e.g. DFT itself has no minimum in the volume range); `kind` names why."""

    def __init__(self, message: str, kind: str = "assessment_failed"):
        super().__init__(message)
        self.kind = kind
