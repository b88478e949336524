"""ASE's EMT potential as a named reference engine: fast tests and machines without Quantum ESPRESSO.

Its labels say engine "emt" and are not DFT; EMT knows only a few elements (EMT_ELEMENTS).
"""

from typing import Any

import ase
import numpy as np
from ase import Atoms
from ase.calculators.emt import EMT, parameters

from autopipe.errors import DFTError

EMT_ELEMENTS = sorted(parameters)


def emt_parameters(atoms: Atoms) -> dict[str, Any]:
    """The EMT 'parameters' (there are none to choose); DFTError for an element EMT does not know."""
    unknown = sorted(set(atoms.get_chemical_symbols()) - set(EMT_ELEMENTS))
    if unknown:
        raise DFTError(
            f"dft.engine 'emt': EMT has no parameters for {', '.join(unknown)}; it knows only "
            f"{', '.join(EMT_ELEMENTS)}. Use dft.engine 'qe' for these elements."
        )
    return {"engine": "emt", "asap_cutoff": False}


def emt_label(atoms: Atoms) -> dict[str, Any]:
    """Energy (eV), forces (eV/A) and, for fully periodic cells, stress (eV/A^3) from EMT."""
    atoms = atoms.copy()
    atoms.calc = EMT(asap_cutoff=False)
    energy = float(atoms.get_potential_energy())
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=True).tolist() if atoms.pbc.all() else None
    return {
        "energy": energy,
        "forces": np.asarray(forces).tolist(),
        "stress": stress,
        "code_version": f"ase {ase.__version__} EMT",
    }
