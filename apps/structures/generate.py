"""The INIT step: the starting structures, read from the user's files and built from a prototype.

Each structure carries `info["source"]` ("fcc-Al rattled 2", "start.xyz[3]") so every later label says
where its geometry came from. The same settings and seed always give the same structures.
"""

from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms
from ase.build import bulk, surface

from autopipe.errors import ConfigError

from .alloys import random_decoration, sqs_cluster_space, sqs_decoration
from .checks import cell_problem
from .serialize import atoms_to_dict
from .settings import NON_CUBIC, GeneratorSettings, StructuresSettings
from .sources import END_MEMBER, slab_source

MIN_VACANCY_CELL = 8  # atoms: a vacancy in a smaller cell is mostly a different crystal
MIN_SLAB_ATOMS = 8  # atoms: a slab repeated in plane until each layer holds more than one or two


def initial_structures(settings: dict[str, Any], elements: list[str], seed: int) -> list[dict[str, Any]]:
    """Starting structures as `atoms_to_dict` dicts: every frame of every file, then the generated ones.

    `settings` is the `structures:` section (`StructuresSettings` as a dict); raises ConfigError naming
    `structures.files[i]` or `structures.generator.*` when a file or prototype cannot give structures.

    >>> [s["info"]["source"] for s in initial_structures(
    ...     {"generator": {"prototype": "fcc", "rattled": 1, "strained": 1}}, ["Al"], seed=0)]
    ['fcc-Al ideal', 'fcc-Al rattled 1', 'fcc-Al strained 1']
    """
    parsed = StructuresSettings.model_validate(settings)
    structures = [
        atoms for i, path in enumerate(parsed.files) for atoms in read_structure_file(path, i, elements)
    ]
    if parsed.generator is not None:
        structures += generated_structures(parsed.generator.with_formula(elements), seed)
    return [atoms_to_dict(atoms) for atoms in structures]


def read_structure_file(path: Path, index: int, elements: list[str]) -> list[Atoms]:
    """All frames of one file, each a periodic cell made only of `elements`."""
    key = f"structures.files[{index}]"
    if not path.is_file():
        raise ConfigError(f"{key}: the structure file {path} does not exist.")
    try:
        frames = ase.io.read(path, index=":")
    except Exception as err:  # ASE's readers raise anything from ValueError to StopIteration
        raise ConfigError(
            f"{key}: ase.io.read cannot read {path} ({type(err).__name__}: {err}). Use a format ASE "
            "recognises from the file name, e.g. extended XYZ (.xyz/.extxyz), .cif, .traj or POSCAR."
        ) from err
    if not frames:
        raise ConfigError(f"{key}: {path} holds no structures.")
    for frame, atoms in enumerate(frames):
        foreign = sorted(set(atoms.get_chemical_symbols()) - set(elements))
        if foreign:
            raise ConfigError(
                f"{key}: frame {frame} of {path} contains {', '.join(foreign)}, which is not in "
                f"elements {elements}; add it to `elements` or remove those structures."
            )
        problem = cell_problem(atoms)
        if problem:
            raise ConfigError(f"{key}: frame {frame} of {path} {problem}; fix or remove that frame.")
        atoms.pbc = True
        atoms.info["source"] = f"{path.name}[{frame}]"
    return frames


def generated_structures(gen: GeneratorSettings, seed: int) -> list[Atoms]:
    """The ideal prototype cell, then `rattled` (Gaussian noise), `strained` (random strain), `scaled`
    (isotropic volume steps, lightly rattled so their forces carry information) and `vacancies` (one atom
    removed from the cell repeated to at least 8 atoms, rattled) copies, then one rattled slab per Miller
    index in `surfaces`. With `occupation` every structure has its own decoration, made before it is
    perturbed: an SQS for the bulk cells when `sqs` is set, random otherwise; then, with `end_members`, the
    ideal cell filled with each element alone and rattled: with every cell at one composition, only the sum
    of the elements' reference energies is determined, and the fit's split of it is arbitrary."""
    ideal = prototype_cell(gen)
    name = f"{gen.prototype}-{gen.formula}" if not gen.occupation else f"{gen.prototype}-{_composition(gen)}"
    rng = np.random.default_rng(seed)
    space = sqs_cluster_space(_bulk_arguments(gen), gen.occupation) if gen.sqs and gen.occupation else None

    def decorated(cell: Atoms, bulk_cell: bool = True) -> Atoms:
        if not gen.occupation:
            return cell.copy()
        if space is not None and bulk_cell:
            return sqs_decoration(cell, space, gen.occupation, int(rng.integers(2**31)))
        return random_decoration(cell, gen.occupation, rng)

    structures = [_with_source(decorated(ideal), f"{name} ideal")] if gen.include_ideal else []
    amplitudes = np.linspace(gen.rattle_stdev, gen.max_rattle_stdev, gen.rattled)
    for copy, stdev in enumerate(amplitudes, start=1):
        atoms = decorated(ideal)
        atoms.positions += rng.normal(0.0, stdev, size=atoms.positions.shape)
        structures.append(_with_source(atoms, f"{name} rattled {copy}"))
    for copy in range(1, gen.strained + 1):
        strain = rng.uniform(-gen.max_strain, gen.max_strain, size=(3, 3))
        atoms = decorated(ideal)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
        structures.append(_with_source(atoms, f"{name} strained {copy}"))
    volumes = np.linspace(1 - gen.max_volume_change, 1 + gen.max_volume_change, gen.scaled) if gen.scaled > 1 else []
    for copy, volume in enumerate(volumes, start=1):
        atoms = decorated(ideal)
        atoms.set_cell(atoms.cell.array * volume ** (1 / 3), scale_atoms=True)
        atoms.positions += rng.normal(0.0, gen.rattle_stdev / 2, size=atoms.positions.shape)
        structures.append(_with_source(atoms, f"{name} scaled {copy} (V x {volume:.3f})"))
    host = repeated_to(ideal, MIN_VACANCY_CELL)
    for copy in range(1, gen.vacancies + 1):
        atoms = decorated(host)
        del atoms[int(rng.integers(len(atoms)))]
        atoms.positions += rng.normal(0.0, gen.rattle_stdev, size=atoms.positions.shape)
        structures.append(_with_source(atoms, f"{name} vacancy {copy}"))
    for indices in gen.surfaces:
        atoms = decorated(slab(gen, indices), bulk_cell=False)
        atoms.positions += rng.normal(0.0, gen.rattle_stdev, size=atoms.positions.shape)
        miller = "".join(str(i) for i in indices)
        structures.append(_with_source(atoms, slab_source(name, miller, gen.slab_layers)))
    for element in gen.occupation if gen.occupation and gen.end_members else ():
        atoms = ideal.copy()
        atoms.set_chemical_symbols([element] * len(atoms))
        atoms.positions += rng.normal(0.0, gen.rattle_stdev, size=atoms.positions.shape)
        structures.append(_with_source(atoms, f"{gen.prototype}-{element} {END_MEMBER}"))
    return structures


def _composition(gen: GeneratorSettings) -> str:
    """`Al0.5Cu0.5` for the name of decorated structures."""
    return "".join(f"{el}{fraction:g}" for el, fraction in sorted(gen.occupation.items()))


def slab(gen: GeneratorSettings, indices: tuple[int, int, int]) -> Atoms:
    """`slab_layers` layers of the prototype's (hkl) plane with `slab_vacuum` between periodic images,
    repeated in plane to at least MIN_SLAB_ATOMS (periodic in all three directions, as DFT needs)."""
    unit = prototype_cell(gen.model_copy(update={"supercell": (1, 1, 1)}))
    atoms = surface(unit, indices, gen.slab_layers, vacuum=gen.slab_vacuum / 2, periodic=True)
    repeats = [1, 1, 1]
    while len(atoms) * repeats[0] * repeats[1] < MIN_SLAB_ATOMS:
        repeats[int(np.argmin(atoms.cell.lengths()[:2] * repeats[:2]))] += 1
    return atoms.repeat(repeats)


def repeated_to(atoms: Atoms, n_atoms: int) -> Atoms:
    """`atoms` repeated along its shortest axes until it holds at least `n_atoms`."""
    repeats = np.ones(3, dtype=int)
    while len(atoms) * repeats.prod() < n_atoms:
        repeats[int((atoms.cell.lengths() * repeats).argmin())] += 1
    return atoms.repeat(repeats.tolist())


def prototype_cell(gen: GeneratorSettings) -> Atoms:
    """`ase.build.bulk` of the prototype, repeated to the supercell; ConfigError if ASE lacks a lattice constant."""
    cubic = gen.cubic and gen.prototype not in NON_CUBIC
    orthorhombic = gen.cubic and gen.prototype in NON_CUBIC
    try:
        atoms = bulk(**_bulk_arguments(gen), cubic=cubic, orthorhombic=orthorhombic)
    except (ValueError, KeyError) as err:
        raise ConfigError(
            f"structures.generator.a: ASE has no reference lattice constant for {gen.formula} as "
            f"{gen.prototype} ({err}); set `a` in Angstrom."
        ) from err
    return atoms.repeat(gen.supercell)


def _bulk_arguments(gen: GeneratorSettings) -> dict[str, Any]:
    """`ase.build.bulk`'s arguments for the prototype's primitive cell."""
    return {"name": gen.formula, "crystalstructure": gen.prototype, "a": gen.a, "c": gen.c}


def _with_source(atoms: Atoms, source: str) -> Atoms:
    atoms.info["source"] = source
    return atoms
