"""The DFT stage: Quantum ESPRESSO labels that choose their own parameters, recover from failures and never
lie; ASE's EMT as a named reference engine. See docs/dft.md for the rules, failure kinds and recoveries."""

from .label import choose_parameters, label
from .pseudo import check_pseudopotentials, read_upf_header

__all__ = ["check_pseudopotentials", "choose_parameters", "label", "read_upf_header"]
