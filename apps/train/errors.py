"""The one error the TRAIN stage raises, tagged with a short `kind` for the `task.failed` event."""

from autopipe.errors import TrainingError

# Every kind a TrainingFailure may carry; the workflow records it as `failure_kind`.
FAILURE_KINDS = (
    "invalid_settings",  # settings dict does not validate
    "empty_dataset",  # no structure, or nothing left to fit (no energy/force weight)
    "invalid_dataset",  # a frame without energy, forces or uuid, or with NaN in them
    "missing_element",  # an element of the run has no atom in the training data
    "unexpected_element",  # the data hold an element the run does not fit
    "missing_reference_energy",  # reference_energy mapping lacks an element
    "missing_executable",  # pacemaker / pace_yaml2yace / pace_activeset not found
    "subprocess_failed",  # a CLI exited non-zero
    "timeout",  # the fit ran past training.timeout
    "out_of_memory",  # MemoryError, TensorFlow OOM, or killed by the kernel
    "nan_loss",  # the loss or the fitted coefficients are not finite
)


class TrainingFailure(TrainingError):
    """A fit that could not produce a potential; `kind` is one of FAILURE_KINDS."""

    def __init__(self, message: str, kind: str) -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown training failure kind {kind!r}")
        super().__init__(message)
        self.kind = kind
