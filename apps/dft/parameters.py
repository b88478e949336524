"""The rule table: which pw.x parameters a structure gets, and why (documented in docs/dft.md).

Every value set in the `dft:` settings wins; every value left as None comes from the `accuracy` preset, the
pseudopotential headers and the cell. `choose_qe_parameters` also returns a `rules` entry saying, per
parameter, where its value came from, so `validate`/`--dry-run` can show it.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import kptdensity2monkhorstpack

from .pseudo import UPFHeader
from .settings import DFTSettings


@dataclass(frozen=True)
class Preset:
    """What one `accuracy` level means."""

    cutoff_factor: float  # x the suggested (UPF header or table) ecutwfc
    kspacing: float  # 1/Angstrom, 2*pi included
    degauss: float  # Ry
    conv_thr_per_atom: float  # Ry
    dual_augmented: int  # ecutrho / ecutwfc for ultrasoft and PAW (norm-conserving: 4)


PRESETS = {
    "fast": Preset(
        cutoff_factor=0.8, kspacing=0.40, degauss=0.0275, conv_thr_per_atom=4e-10, dual_augmented=8
    ),
    "standard": Preset(
        cutoff_factor=1.0, kspacing=0.25, degauss=0.02, conv_thr_per_atom=2e-10, dual_augmented=8
    ),
    "precise": Preset(
        cutoff_factor=1.25, kspacing=0.15, degauss=0.0125, conv_thr_per_atom=1e-10, dual_augmented=12
    ),
}

DUAL_NORM_CONSERVING = 4

# Suggested ecutwfc (Ry) for pseudopotentials whose header suggests none; typical of the common libraries.
ECUTWFC_TABLE = {
    "H": 40,
    "Li": 40,
    "Be": 40,
    "B": 35,
    "C": 45,
    "N": 45,
    "O": 50,
    "F": 50,
    "Na": 40,
    "Mg": 30,
    "Al": 30,
    "Si": 30,
    "P": 30,
    "S": 35,
    "Cl": 40,
    "K": 40,
    "Ca": 30,
    "Sc": 35,
    "Ti": 35,
    "V": 35,
    "Cr": 40,
    "Mn": 45,
    "Fe": 45,
    "Co": 45,
    "Ni": 45,
    "Cu": 45,
    "Zn": 40,
    "Ga": 40,
    "Ge": 40,
    "As": 35,
    "Se": 35,
    "Zr": 30,
    "Nb": 35,
    "Mo": 35,
    "Ru": 35,
    "Rh": 35,
    "Pd": 35,
    "Ag": 35,
    "Sn": 35,
    "Hf": 30,
    "Ta": 35,
    "W": 35,
    "Ir": 35,
    "Pt": 35,
    "Au": 35,
    "Pb": 30,
}
ECUTWFC_DEFAULT = 40

# Initial magnetic moment (Bohr magnetons per atom) for spin-polarised runs; spin "auto" turns spin on when
# any of these elements is present. pw.x wants a fraction of the valence charge: moment / z_valence.
MAGNETIC_MOMENTS = {
    "V": 2.0,
    "Cr": 3.0,
    "Mn": 4.0,
    "Fe": 3.0,
    "Co": 2.0,
    "Ni": 1.0,
    "Ce": 1.0,
    "Nd": 3.0,
    "Sm": 5.0,
    "Eu": 7.0,
    "Gd": 7.0,
    "Tb": 6.0,
    "Dy": 5.0,
    "Ho": 4.0,
    "Er": 3.0,
}
MOMENT_WHEN_SPIN_ON = 1.0  # for elements outside the table when spin is forced "on"

VACUUM_GAP = 6.0  # Angstrom: a direction with an empty slab this thick gets a single k-point
MIXING_BETA_FLOOR = 0.1
BAND_FACTOR, EXTRA_BANDS = 1.5, 4  # nbnd = max(1.5 x occupied, occupied + 4) (_bands)


def vacuum_directions(atoms: Atoms, gap: float = VACUUM_GAP) -> list[bool]:
    """True for each cell direction that is non-periodic or holds an atom-free slab at least `gap` thick."""
    heights = 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)  # distance between lattice planes
    frac = atoms.get_scaled_positions(wrap=True)
    vacuum = []
    for i in range(3):
        if not atoms.pbc[i]:
            vacuum.append(True)
            continue
        s = np.sort(frac[:, i])
        widest = np.max(np.diff(np.append(s, s[0] + 1.0)))
        vacuum.append(bool(widest * heights[i] >= gap))
    return vacuum


def kpoint_grid(atoms: Atoms, kspacing: float) -> tuple[list[int], list[bool]]:
    """Gamma-centred Monkhorst-Pack sizes from a spacing in 1/Angstrom (2*pi included); 1 across vacuum."""
    vacuum = vacuum_directions(atoms)
    sizes = kptdensity2monkhorstpack(atoms, kptdensity=1.0 / kspacing, even=False)
    return [1 if v else int(n) for n, v in zip(sizes, vacuum)], vacuum


def _cutoffs(settings: DFTSettings, preset: Preset, headers: dict[str, UPFHeader]) -> tuple[dict, dict]:
    rules = {}
    if settings.ecutwfc is not None:
        ecutwfc = float(settings.ecutwfc)
        rules["ecutwfc"] = "dft.ecutwfc"
    else:
        suggested = {el: h.wfc_cutoff or ECUTWFC_TABLE.get(el, ECUTWFC_DEFAULT) for el, h in headers.items()}
        source = {el: "UPF header" if h.wfc_cutoff else "element table" for el, h in headers.items()}
        top = max(suggested, key=suggested.get)
        ecutwfc = float(math.ceil(suggested[top] * preset.cutoff_factor))
        rules["ecutwfc"] = (
            f"largest suggestion {suggested[top]:.1f} Ry ({top}, {source[top]}) "
            f"x {preset.cutoff_factor} ({settings.accuracy})"
        )
    augmented = sorted(el for el, h in headers.items() if h.needs_augmentation)
    dual = preset.dual_augmented if augmented else DUAL_NORM_CONSERVING
    if settings.ecutrho is not None:
        ecutrho = float(settings.ecutrho)
        rules["ecutrho"] = "dft.ecutrho"
    else:
        header_rho = max((h.rho_cutoff or 0.0) * preset.cutoff_factor for h in headers.values())
        ecutrho = float(math.ceil(max(dual * ecutwfc, header_rho)))
        kind = f"ultrasoft/PAW ({', '.join(augmented)})" if augmented else "norm-conserving only"
        rules["ecutrho"] = f"{dual} x ecutwfc, {kind}" + (
            "; raised to the UPF header's suggestion" if header_rho > dual * ecutwfc else ""
        )
    return {"ecutwfc": ecutwfc, "ecutrho": ecutrho}, rules


def _spin(atoms: Atoms, settings: DFTSettings, headers: dict[str, UPFHeader]) -> tuple[dict, str]:
    elements = sorted(set(atoms.get_chemical_symbols()))
    magnetic = [el for el in elements if el in MAGNETIC_MOMENTS]
    if settings.spin == "off" or (settings.spin == "auto" and not magnetic):
        why = "dft.spin off" if settings.spin == "off" else "no magnetic element present"
        return {"nspin": 1, "starting_magnetization": {}}, why
    moments = {
        el: MAGNETIC_MOMENTS.get(el, MOMENT_WHEN_SPIN_ON if settings.spin == "on" else 0.0) for el in elements
    }
    fractions = {el: round(min(1.0, m / headers[el].z_valence), 4) for el, m in moments.items()}
    why = ("dft.spin on" if settings.spin == "on" else f"magnetic element(s) {', '.join(magnetic)}") + (
        "; starting_magnetization = moment table / z_valence"
    )
    return {"nspin": 2, "starting_magnetization": fractions}, why


def _bands(atoms: Atoms, headers: dict[str, UPFHeader]) -> tuple[int, str]:
    """Enough bands that the highest stays empty in thermal frames of metals, so pw.x runs once.

    pw.x's own default (20% above the occupied count, at least 4 more) left the top band of 8- and 16-atom
    Al frames holding 0.02-0.99 electrons at some k-point: every such label and MD-check reference ran
    twice (the `more_bands` handler). Empty bands cost far less than a second attempt.
    """
    occupied = sum(headers[symbol].z_valence for symbol in atoms.get_chemical_symbols()) / 2
    nbnd = max(math.ceil(BAND_FACTOR * occupied), math.ceil(occupied) + EXTRA_BANDS)
    return nbnd, f"max({BAND_FACTOR} x {occupied:g} occupied bands, occupied + {EXTRA_BANDS})"


def choose_qe_parameters(
    atoms: Atoms, settings: DFTSettings, headers: dict[str, UPFHeader]
) -> dict[str, Any]:
    """The complete, flat pw.x parameter set for `atoms`, with a `rules` entry explaining each choice."""
    preset = PRESETS[settings.accuracy]
    cutoffs, rules = _cutoffs(settings, preset, headers)
    kspacing = settings.kspacing or preset.kspacing
    kpts, vacuum = kpoint_grid(atoms, kspacing)
    rules["kpts"] = (
        f"kspacing {kspacing} 1/A ({'dft.kspacing' if settings.kspacing else settings.accuracy}), "
        "Gamma-centred"
        + (f"; 1 along vacuum direction(s) {[i for i, v in enumerate(vacuum) if v]}" if any(vacuum) else "")
    )
    spin, rules["nspin"] = _spin(atoms, settings, headers)
    nbnd, rules["nbnd"] = _bands(atoms, headers)
    per_atom = settings.conv_thr or preset.conv_thr_per_atom
    rules["degauss"] = "dft.degauss" if settings.degauss else f"{settings.accuracy} preset"
    rules["conv_thr"] = f"{per_atom:g} Ry/atom x {len(atoms)} atoms"
    return {
        "engine": "qe",
        "accuracy": settings.accuracy,
        **cutoffs,
        "kspacing": kspacing,
        "kpts": kpts,
        "koffset": [0, 0, 0],
        "occupations": "smearing",
        "smearing": settings.smearing,
        "degauss": settings.degauss or preset.degauss,
        **spin,
        "conv_thr": per_atom * len(atoms),
        "mixing_beta": settings.mixing_beta,
        "electron_maxstep": settings.electron_maxstep,
        "diagonalization": "david",
        "nbnd": nbnd,
        "pw_input": settings.pw_input,
        "pseudo_dir": str(settings.pseudo_dir),
        "pseudopotentials": {el: h.file for el, h in sorted(headers.items())},
        "command": settings.command,
        "omp_num_threads": settings.omp_num_threads,
        "timeout": settings.timeout,
        "timeout_extended": False,
        "rules": rules,
    }
