"""The ASSESS app: the potential's properties beside fresh DFT's, each judged against its tolerance.

DFT's side comes from the reference labels the core computed (cells built by `cells.py` at DFT's V0); the
potential's side is computed here, each property at the potential's own equilibrium volume so that an
error in a0 is not counted again in the elastic constants or phonons.
"""

from typing import Any

import numpy as np
from ase import Atoms

from autopipe.apps.explore.walker import load_calculator
from autopipe.apps.structures import atoms_from_dict
from autopipe.errors import AssessmentError

from . import properties as props
from .cells import Crystal, elastic_cells, eos_cells, phonon_cells, phonon_setup, vacancy_cells
from .settings import AssessSettings, Tolerances


def equilibrium_cells(crystal: Crystal, settings: AssessSettings) -> list[Atoms]:
    """The cells measured at equilibrium: elastic strains (cubic only), phonon displacements, vacancy."""
    wanted = settings.properties
    cells = []
    if "elastic" in wanted and crystal.cubic:
        cells += elastic_cells(crystal, settings.strain)
    if "phonons" in wanted:
        cells += phonon_cells(phonon_setup(crystal, settings.phonon_supercell, settings.phonon_displacement))
    if "vacancy" in wanted:
        cells += vacancy_cells(crystal, settings.vacancy_supercell)
    return cells


def reference_cells(crystal: Crystal, settings: AssessSettings) -> list[Atoms]:
    """Everything DFT computes once V0 is known (the crystal at that volume): E(V), then equilibrium cells."""
    cells = (
        eos_cells(crystal, settings.eos_points, settings.eos_volume_range)
        if "eos" in settings.properties
        else []
    )
    return cells + equilibrium_cells(crystal, settings)


def measure(crystal: Crystal, results: props.Results, settings: AssessSettings) -> dict[str, Any]:
    """Every enabled property from `results` of the cells built at `crystal`'s volume (EOS excepted)."""
    measured: dict[str, Any] = {}
    wanted = settings.properties
    if "elastic" in wanted and crystal.cubic:
        measured["elastic"] = props.cubic_elastic_constants(results, settings.strain)
    if "phonons" in wanted:
        phonon = phonon_setup(crystal, settings.phonon_supercell, settings.phonon_displacement)
        measured["phonons"] = props.phonon_frequencies(phonon, results, crystal)
    if "vacancy" in wanted:
        measured["vacancy"] = props.vacancy_formation_energy(results)
    return measured


def assess_potential(
    ground_state: dict[str, Any],
    potential: str,
    active_set: str,
    settings: dict[str, Any],
    reference_volume: float,
    references: list[dict[str, Any]],
    md: dict[str, Any] | None,
) -> dict[str, Any]:
    """Compare the potential with DFT; returns ``rows`` (one per number compared), ``usable``, ``reason``
    and ``failing`` (the properties that did not pass, which the core aims the next exploration at).

    `references` are the DFT results {name, structure, energy, forces, stress} of the cells built at
    `reference_volume` (A^3/atom) and of the MD check's snapshots; `md` is the MD check's summary.
    """
    opts = AssessSettings.model_validate(settings)
    calc = load_calculator(potential, active_set)
    crystal = Crystal.from_atoms(atoms_from_dict(ground_state))
    at_reference = crystal.at_volume(reference_volume)
    dft = {r["name"]: _result(atoms_from_dict(r["structure"]), r) for r in references}
    rows: list[dict[str, Any]] = []
    dft_volume = pot_volume = reference_volume
    if "eos" in opts.properties:
        dft_eos = props.equation_of_state(dft)  # DFT without a minimum is the reference's failure: raise
        pot_eos = _potential_eos(calc, references)
        rows += _eos_rows(crystal, dft_eos, pot_eos, opts.tolerances)
        dft_volume = dft_eos["v0"]
        pot_volume = pot_eos.get("v0", reference_volume)
    dft_measured = measure(at_reference, dft, opts)
    at_potential = crystal.at_volume(pot_volume)
    pot_measured = measure(at_potential, _evaluate(calc, equilibrium_cells(at_potential, opts)), opts)
    rows += _equilibrium_rows(dft_measured, pot_measured, opts.tolerances)
    if "md_forces" in opts.properties and md is not None:
        snapshots = [r for r in references if r["name"].startswith("md/")]
        rows += _md_rows(calc, snapshots, md, dft_volume, dft, opts.tolerances)
    failed_rows = [row for row in rows if row["passed"] is False]
    return {
        "rows": rows,
        "usable": not failed_rows,
        "reason": "; ".join(_describe(row) for row in failed_rows) or "every property within its tolerance",
        "failing": sorted({row["property"] for row in failed_rows}),
        "dft_volume": dft_volume,
        "potential_volume": pot_volume,
    }


def _result(atoms: Atoms, numbers: dict[str, Any]) -> dict[str, Any]:
    return {
        "energy": numbers["energy"],
        "forces": np.asarray(numbers["forces"]),
        "stress": np.asarray(numbers["stress"]) if numbers.get("stress") is not None else None,
        "n_atoms": len(atoms),
        "volume": atoms.get_volume(),
    }


def _evaluate(calc: Any, cells: list[Atoms]) -> props.Results:
    """The potential's energy, forces and stress of each cell, by name."""
    results = {}
    for atoms in cells:
        atoms.calc = calc
        numbers = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "stress": atoms.get_stress(),
        }
        results[atoms.info["assess"]] = _result(atoms, numbers)
    return results


def _potential_eos(calc: Any, references: list[dict[str, Any]]) -> dict[str, Any]:
    """The potential's E(V) on DFT's volumes; {"failure": why} instead of a crash when it has no minimum."""
    cells = [_named(reference) for reference in references if reference["name"].startswith("eos/")]
    try:
        return props.equation_of_state(_evaluate(calc, cells))
    except AssessmentError as err:
        return {"failure": str(err)}


def _row(
    prop: str,
    name: str,
    unit: str,
    dft: float | None,
    pot: float | None,
    tolerance: str,
    passed: bool | None,
    note: str = "",
) -> dict[str, Any]:
    dft, pot = (None if v is None else float(v) for v in (dft, pot))
    error = None if dft is None or pot is None else pot - dft
    percent = None if error is None or not dft else 100 * error / abs(dft)
    return {
        "property": prop,
        "name": name,
        "unit": unit,
        "dft": dft,
        "potential": pot,
        "error": error,
        "error_percent": percent,
        "tolerance": tolerance,
        "passed": None if passed is None else bool(passed),
        "note": note,
    }


def _within(dft: float, pot: float, percent: float, absolute: float | None = None) -> bool:
    error = abs(pot - dft)
    return error <= percent / 100 * abs(dft) or (absolute is not None and error <= absolute)


def _eos_rows(
    crystal: Crystal, dft: dict[str, Any], pot: dict[str, Any], tol: Tolerances
) -> list[dict[str, Any]]:
    a_dft = crystal.lattice_constant(dft["v0"])
    if "failure" in pot:
        return [
            _row("eos", "a0", "A", a_dft, None, f"{tol.a0_percent:g}%", False, pot["failure"]),
            _row(
                "eos",
                "B",
                "GPa",
                dft["bulk_modulus"],
                None,
                f"{tol.bulk_modulus_percent:g}%",
                False,
                "no equilibrium volume",
            ),
        ]
    a_pot = crystal.lattice_constant(pot["v0"])
    return [
        _row("eos", "a0", "A", a_dft, a_pot, f"{tol.a0_percent:g}%", _within(a_dft, a_pot, tol.a0_percent)),
        _row(
            "eos",
            "B",
            "GPa",
            dft["bulk_modulus"],
            pot["bulk_modulus"],
            f"{tol.bulk_modulus_percent:g}%",
            _within(dft["bulk_modulus"], pot["bulk_modulus"], tol.bulk_modulus_percent),
        ),
    ]


def _equilibrium_rows(dft: dict[str, Any], pot: dict[str, Any], tol: Tolerances) -> list[dict[str, Any]]:
    rows = []
    for name, value in dft.get("elastic", {}).items():
        other = pot["elastic"][name]
        rows.append(
            _row(
                "elastic",
                name,
                "GPa",
                value,
                other,
                f"{tol.elastic_percent:g}% or {tol.elastic_gpa:g} GPa",
                _within(value, other, tol.elastic_percent, tol.elastic_gpa),
            )
        )
    for point, frequencies in dft.get("phonons", {}).items():
        pairs = [(f, p) for f, p in zip(frequencies, pot["phonons"][point]) if abs(f) > 0.1 or abs(p) > 0.1]
        if not pairs:
            continue  # only acoustic zeros (Gamma of a one-atom cell)
        worst = max(pairs, key=lambda fp: abs(fp[1] - fp[0]))
        passed = all(_within(f, p, tol.phonon_percent, tol.phonon_thz) for f, p in pairs)
        rows.append(
            _row(
                "phonons",
                f"nu({point})",
                "THz",
                worst[0],
                worst[1],
                f"{tol.phonon_percent:g}% or {tol.phonon_thz:g} THz",
                passed,
                f"worst of {len(pairs)} branches",
            )
        )
    if "vacancy" in dft:
        rows.append(
            _row(
                "vacancy",
                "E_vac",
                "eV",
                dft["vacancy"],
                pot["vacancy"],
                f"{tol.vacancy_ev:g} eV",
                abs(pot["vacancy"] - dft["vacancy"]) <= tol.vacancy_ev,
                "unrelaxed",
            )
        )
    return rows


def _md_rows(
    calc: Any,
    snapshots: list[dict[str, Any]],
    md: dict[str, Any],
    dft_volume: float,
    dft: props.Results,
    tol: Tolerances,
) -> list[dict[str, Any]]:
    rows = [
        _row(
            "md_forces",
            "stable",
            "",
            None,
            None,
            "no collapse, no atom lost",
            md["stable"],
            md["reason"] or f"max {md['max_temperature']:.0f} K",
        )
    ]
    if md.get("npt_volume_per_atom") is not None:
        volume = md["npt_volume_per_atom"]
        rows.append(
            _row(
                "md_forces",
                "V_npt",
                "A^3/atom",
                dft_volume,
                volume,
                f"{tol.md_density_percent:g}%",
                _within(dft_volume, volume, tol.md_density_percent),
                "NPT mean vs DFT V0",
            )
        )
    if snapshots:
        predicted = _evaluate(calc, [_named(s) for s in snapshots])
        errors = props.force_errors(
            [dft[s["name"]]["forces"] for s in snapshots], [predicted[s["name"]]["forces"] for s in snapshots]
        )
        rows.append(
            _row(
                "md_forces",
                "force RMSE",
                "meV/A",
                None,  # the error against DFT is the number itself: no DFT value to print beside it
                errors["rmse"],
                f"{tol.md_force_rmse_mev_a:g} meV/A",
                errors["rmse"] <= tol.md_force_rmse_mev_a,
                f"{len(snapshots)} snapshots of {len(snapshots[0]['structure']['numbers'])} atoms; "
                f"max error {errors['max']:.0f} meV/A",
            )
        )
    return rows


def _named(reference: dict[str, Any]) -> Atoms:
    atoms = atoms_from_dict(reference["structure"])
    atoms.info["assess"] = reference["name"]
    return atoms


def _describe(row: dict[str, Any]) -> str:
    if row["potential"] is None:
        return f"{row['name']}: {row['note']}" if row["note"] else row["name"]
    if row["error_percent"] is not None:
        return f"{row['name']} {row['error_percent']:+.1f}%"
    return f"{row['name']} {row['potential']:.3g} {row['unit']} (tolerance {row['tolerance']})"
