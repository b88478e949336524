"""TRAIN stage: Pacemaker ACE potentials (linear or nonlinear), active set, honest metrics, committee."""

from .committee import committee_calculator, committee_force_std
from .errors import FAILURE_KINDS, TrainingFailure
from .settings import PRESETS, TrainingSettings
from .trainer import PacemakerTrainer, fit

__all__ = [
    "FAILURE_KINDS",
    "PRESETS",
    "PacemakerTrainer",
    "TrainingFailure",
    "TrainingSettings",
    "committee_calculator",
    "committee_force_std",
    "fit",
]
