"""The cells an assessment computes, built the same way for DFT and for the potential.

Every builder is deterministic, so a reference cell has the same geometry (and so the same DFT task key)
in every generation and round: fresh DFT is computed once per (structure, DFT settings). Each cell is named
in ``info["assess"]`` ("eos/3", "elastic/xx+", "phonons/0", "vacancy/defect", "md/npt/1").
"""

from dataclasses import dataclass

import numpy as np
import spglib
from ase import Atoms
from phonopy import Phonopy
from phonopy.structure.atoms import PhonopyAtoms

from autopipe.errors import AssessmentError

COARSE_EOS_RANGE = 0.15  # +-15 % in volume around the input's lattice constant, to find DFT's V0 first
#: Voigt index and strain tensor entries of the finite strains for cubic C11, C12 (xx) and C44 (yz).
ELASTIC_STRAINS = {"xx": ((0, 0),), "yz": ((1, 2), (2, 1))}


@dataclass(frozen=True)
class Crystal:
    """The ground state to assess: its primitive cell, conventional cell and whether that is cubic."""

    primitive: Atoms
    conventional: Atoms
    cubic: bool

    @classmethod
    def from_atoms(cls, atoms: Atoms) -> "Crystal":
        """Standardise a bulk cell with spglib; AssessmentError if it is not a periodic crystal."""
        if not atoms.pbc.all() or atoms.cell.rank < 3:
            raise AssessmentError(
                f"the assessment needs a periodic bulk crystal; {atoms.get_chemical_formula()} is not one",
                "not_a_crystal",
            )
        cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
        dataset = spglib.get_symmetry_dataset(cell, symprec=1e-3)
        if dataset is None:
            raise AssessmentError(
                f"spglib finds no symmetry for {atoms.get_chemical_formula()}", "not_a_crystal"
            )
        return cls(
            primitive=_atoms(spglib.standardize_cell(cell, to_primitive=True, symprec=1e-3)),
            conventional=_atoms(spglib.standardize_cell(cell, to_primitive=False, symprec=1e-3)),
            cubic=dataset.number >= 195,
        )

    @property
    def volume_per_atom(self) -> float:
        return self.primitive.get_volume() / len(self.primitive)

    def at_volume(self, volume_per_atom: float) -> "Crystal":
        """The same crystal scaled isotropically to `volume_per_atom`."""
        factor = (volume_per_atom / self.volume_per_atom) ** (1 / 3)
        return Crystal(_scaled(self.primitive, factor), _scaled(self.conventional, factor), self.cubic)

    def lattice_constant(self, volume_per_atom: float) -> float:
        """The conventional cell's first lattice constant at `volume_per_atom`."""
        return float(
            self.conventional.cell.lengths()[0] * (volume_per_atom / self.volume_per_atom) ** (1 / 3)
        )


def eos_cells(crystal: Crystal, points: int, volume_range: float) -> list[Atoms]:
    """`points` conventional cells with volumes evenly spaced over (1 +- volume_range) x the crystal's.

    Conventional rather than primitive: its k-point mesh (chosen from a spacing) stays the same over a
    +-6% scan where a primitive cell's jumps a size, and a jump shifts E(V) by more than B's curvature.
    """
    cells = []
    for index, fraction in enumerate(np.linspace(1 - volume_range, 1 + volume_range, points)):
        cells.append(_named(_scaled(crystal.conventional, fraction ** (1 / 3)), f"eos/{index}"))
    return cells


def elastic_cells(crystal: Crystal, strain: float) -> list[Atoms]:
    """Conventional cubic cells under +-`strain` along xx and yz (C11 and C12 from xx, C44 from yz)."""
    cells = []
    for name, entries in ELASTIC_STRAINS.items():
        for sign, suffix in ((1, "+"), (-1, "-")):
            epsilon = np.zeros((3, 3))
            for i, j in entries:
                epsilon[i, j] = sign * strain
            atoms = crystal.conventional.copy()
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + epsilon), scale_atoms=True)
            cells.append(_named(atoms, f"elastic/{name}{suffix}"))
    return cells


def phonon_setup(crystal: Crystal, supercell: tuple[int, int, int], displacement: float) -> Phonopy:
    """Phonopy's finite-displacement setup for the primitive cell (its displaced supercells to compute)."""
    unit = PhonopyAtoms(
        symbols=crystal.primitive.get_chemical_symbols(),
        cell=crystal.primitive.cell.array,
        scaled_positions=crystal.primitive.get_scaled_positions(),
    )
    phonon = Phonopy(unit, supercell_matrix=np.diag(supercell))
    phonon.generate_displacements(distance=displacement)
    return phonon


def phonon_cells(phonon: Phonopy) -> list[Atoms]:
    return [
        _named(
            Atoms(sc.symbols, cell=sc.cell, scaled_positions=sc.scaled_positions, pbc=True), f"phonons/{i}"
        )
        for i, sc in enumerate(phonon.supercells_with_displacements)
    ]


def vacancy_cells(crystal: Crystal, supercell: tuple[int, int, int]) -> list[Atoms]:
    """The perfect conventional supercell and the same with its first atom removed (unrelaxed)."""
    perfect = crystal.conventional.repeat(supercell)
    defect = perfect.copy()
    del defect[0]
    return [_named(perfect, "vacancy/perfect"), _named(defect, "vacancy/defect")]


def _atoms(cell: tuple) -> Atoms:
    lattice, positions, numbers = cell
    return Atoms(numbers=numbers, cell=lattice, scaled_positions=positions, pbc=True)


def _scaled(atoms: Atoms, factor: float) -> Atoms:
    scaled = atoms.copy()
    scaled.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return scaled


def _named(atoms: Atoms, name: str) -> Atoms:
    atoms.info = {"assess": name}
    return atoms
