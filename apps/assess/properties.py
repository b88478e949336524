"""Material properties from the energies, forces and stresses of the assessment cells (either side).

Each function takes the results of the cells `cells.py` built, by name, so the same code measures DFT and
the potential. Units: eV, Angstrom, GPa, THz.
"""

from typing import Any

import numpy as np
from ase import units
from ase.eos import EquationOfState
from phonopy import Phonopy

from autopipe.errors import AssessmentError

from .cells import Crystal

Results = dict[str, dict[str, Any]]  # cell name -> {"energy", "forces", "stress", "n_atoms", "volume"}


def equation_of_state(results: Results, prefix: str = "eos/") -> dict[str, Any]:
    """Birch-Murnaghan fit of E(V) per atom: V0, E0, B; AssessmentError `no_minimum` if none lies inside.

    A minimum at the edge of the scanned volumes, or a fit whose V0 falls outside them, is not a minimum:
    the potential (or DFT) would keep shrinking or expanding.
    """
    names = sorted((n for n in results if n.startswith(prefix)), key=lambda n: int(n.rsplit("/", 1)[1]))
    volumes = np.array([results[n]["volume"] / results[n]["n_atoms"] for n in names])
    energies = np.array([results[n]["energy"] / results[n]["n_atoms"] for n in names])
    curve = {"volumes": volumes.tolist(), "energies": energies.tolist()}
    lowest = int(np.argmin(energies))
    if lowest in (0, len(energies) - 1):
        edge = "smallest" if lowest == 0 else "largest"
        raise AssessmentError(
            f"no minimum of E(V) between {volumes[0]:.2f} and {volumes[-1]:.2f} A^3/atom: the energy is "
            f"lowest at the {edge} volume",
            "no_minimum",
        )
    try:
        v0, e0, b = EquationOfState(volumes, energies, eos="birchmurnaghan").fit()
    except (RuntimeError, ValueError) as err:
        raise AssessmentError(f"the E(V) fit failed: {err}", "no_minimum") from err
    if not (volumes[0] <= v0 <= volumes[-1]) or not b > 0:
        raise AssessmentError(
            f"the E(V) fit puts V0 = {v0:.2f} A^3/atom outside the scanned range or has B <= 0", "no_minimum"
        )
    return {"v0": float(v0), "e0": float(e0), "bulk_modulus": float(b / units.GPa), **curve}


def cubic_elastic_constants(results: Results, strain: float) -> dict[str, float]:
    """C11, C12, C44 (GPa) by central differences of the stress under +-`strain` (cells.elastic_cells)."""

    def slope(name: str, component: int) -> float:
        plus, minus = results[f"elastic/{name}+"]["stress"], results[f"elastic/{name}-"]["stress"]
        return (plus[component] - minus[component]) / (2 * strain) / units.GPa

    # Voigt order xx yy zz yz xz xy; a tensor strain eps_yz = eps_zy = s is an engineering shear of 2 s.
    return {"C11": slope("xx", 0), "C12": slope("xx", 1), "C44": slope("yz", 3) / 2}


def phonon_frequencies(phonon: Phonopy, results: Results, crystal: Crystal) -> dict[str, list[float]]:
    """Frequencies (THz, ascending) at the high-symmetry points the displacement supercell can represent."""
    phonon.forces = np.array(
        [results[f"phonons/{i}"]["forces"] for i in range(len(phonon.supercells_with_displacements))]
    )
    phonon.produce_force_constants()
    points = commensurate_points(crystal, np.diag(phonon.supercell_matrix))
    phonon.run_qpoints(list(points.values()))
    frequencies = phonon.qpoints.frequencies
    return {label: sorted(float(f) for f in row) for label, row in zip(points, frequencies)}


def commensurate_points(crystal: Crystal, supercell: np.ndarray) -> dict[str, np.ndarray]:
    """The special points of the primitive cell's Brillouin zone (ASE's) that the supercell samples exactly."""
    points = crystal.primitive.cell.bandpath(npoints=0).special_points
    return {
        label: q
        for label, q in sorted(points.items())
        if np.allclose(q * supercell, np.round(q * supercell), atol=1e-6)
    }


def vacancy_formation_energy(results: Results) -> float:
    """E_f = E(N-1) - (N-1)/N E(N), both cells unrelaxed (eV)."""
    perfect, defect = results["vacancy/perfect"], results["vacancy/defect"]
    return float(defect["energy"] - defect["n_atoms"] / perfect["n_atoms"] * perfect["energy"])


def force_errors(reference: list[np.ndarray], predicted: list[np.ndarray]) -> dict[str, float]:
    """Force RMSE per component and the largest per-atom error norm over all snapshots (meV/A)."""
    difference = np.concatenate([np.asarray(p) - np.asarray(r) for r, p in zip(reference, predicted)])
    return {
        "rmse": float(np.sqrt(np.mean(difference**2)) * 1000),
        "max": float(np.linalg.norm(difference, axis=1).max() * 1000),
    }
