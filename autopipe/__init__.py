"""mlip-autopipe: the active-learning loop for ACE potentials as an event-sourced state machine."""

__version__ = "0.1.0"
