"""ASSESS: the potential's lattice constant, bulk modulus, elastic constants, phonons, vacancy energy and MD
forces against fresh DFT (docs/assessment.md)."""

from .compare import assess_potential
from .md_check import md_check

__all__ = ["assess_potential", "md_check"]
