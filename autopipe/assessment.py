"""ASSESS: the potential against fresh DFT it never saw, run as ordinary keyed tasks of the workflow.

Order (docs/assessment.md): a coarse DFT E(V) of the ground state finds DFT's V0; the reference cells are
built at that volume (fine E(V), elastic strains, phonon displacements, a vacancy) while the potential
drives an MD check whose snapshots are labelled too; then one task compares. Reference labels are `reference`
tasks keyed by (geometry, DFT physics) like labels, so a later generation or round recomputes none of them;
they live in `assessment/references/<key>/` and never in structures.db: the assessment stays held out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ase import Atoms

from autopipe.apps.assess.cells import COARSE_EOS_RANGE, Crystal, eos_cells
from autopipe.apps.assess.compare import reference_cells
from autopipe.apps.assess.properties import equation_of_state
from autopipe.apps.explore import read_candidates
from autopipe.apps.structures import atoms_from_dict, atoms_to_dict
from autopipe.apps.structures.generate import prototype_cell, read_structure_file, repeated_to
from autopipe.config import SystemConfig
from autopipe.dispatch import read_result
from autopipe.errors import AssessmentError

if TYPE_CHECKING:
    from autopipe.workflow import WorkflowManager

MIN_AIMED_ATOMS = 8  # aimed walkers run in cells of at least this many atoms (DFT must afford them)


def ground_state(config: SystemConfig) -> Atoms:
    """The crystal the assessment measures: the generator's prototype cell (one cell, no supercell), else
    the first frame of the first structure file."""
    generator = config.structures.generator
    if generator is not None:
        return prototype_cell(generator.model_copy(update={"supercell": (1, 1, 1)}))
    return read_structure_file(config.structures.files[0], 0, list(config.elements))[0]


def md_temperature(config: SystemConfig) -> float:
    return config.assess.md.temperature or max(config.exploration.temperatures)


class Assessment:
    """One assessment of one generation's potential, its tasks run through the workflow's `run_tasks`."""

    def __init__(self, manager: WorkflowManager, generation: int, round_: int, source: str):
        self.manager = manager
        self.config = manager.config
        self.settings = manager.config.assess
        self.generation = generation
        self.round = round_
        self.source = source
        self.crystal = Crystal.from_atoms(ground_state(self.config))

    def run(self) -> dict[str, Any]:
        """Every task of the assessment, then the `assessment.finished` payload (not yet appended)."""
        coarse = self.references(eos_cells(self.crystal, self.settings.eos_points, COARSE_EOS_RANGE))
        try:
            v0 = equation_of_state({name: _numbers(r) for name, r in coarse.items()})["v0"]
        except AssessmentError as err:
            raise AssessmentError(
                f"DFT's own energy-volume curve of {self.crystal.primitive.get_chemical_formula()} has no "
                f"minimum within +-{COARSE_EOS_RANGE:.0%} of the input volume ({err}); set "
                "structures.generator.a closer to the equilibrium lattice constant",
                "reference_no_minimum",
            ) from err
        center = self.crystal.at_volume(v0)
        md = self.md_check(center) if "md_forces" in self.settings.properties else None
        cells = reference_cells(center, self.settings)
        if md is not None:
            cells += read_candidates(self.manager.project.root / md["snapshots"])
        references = self.references(cells)
        verdict = self.compare(v0, references, md)
        return {
            "generation": self.generation,
            "round": self.round,
            "source": self.source,
            "usable": verdict["usable"],
            "reason": verdict["reason"],
            "failing": verdict["failing"],
            "rows": verdict["rows"],
            "reference_volume": v0,
            "dft_volume": verdict["dft_volume"],
            "potential_volume": verdict["potential_volume"],
            "n_references": len(coarse) + len(references),
        }

    def references(self, cells: list[Atoms]) -> dict[str, dict[str, Any]]:
        """Fresh DFT of each cell (cached by key), by cell name: {name, structure, energy, forces, stress}."""
        manager = self.manager
        physics = manager.dft_physics()
        specs, names = [], {}
        for atoms in cells:
            name = atoms.info["assess"]
            structure = atoms_to_dict(atoms)
            key = manager.dft_key("reference", structure, physics)
            task_dir = manager.project.root / "assessment" / "references" / key
            names[name] = (key, task_dir, structure)
            specs.append(
                {
                    "key": key,
                    "label": name,
                    "task_dir": task_dir,
                    "kwargs": {
                        "structure": structure,
                        "settings": manager.config.dft.model_dump(mode="json"),
                        "workdir": str(task_dir / "run"),
                    },
                    # the label lives only in result.json (never in structures.db): gone, it is computed again
                    "needs": lambda _, task_dir=task_dir: manager.result_damage(task_dir),
                }
            )
        outcomes = manager.run_tasks("reference", self.generation, specs)
        results = {}
        for name, (key, task_dir, structure) in names.items():
            if "failed" in outcomes[key]:
                raise AssessmentError(
                    f"the DFT reference {name} failed ({outcomes[key]['failed']}): {outcomes[key]['message']}",
                    "reference_failed",
                )
            label = read_result(task_dir)["value"]
            results[name] = {
                "name": name,
                "structure": structure,
                "energy": label["energy"],
                "forces": label["forces"],
                "stress": label["stress"],
            }
        return results

    def md_check(self, center: Crystal) -> dict[str, Any]:
        """MD with the potential in the MD-check supercell at DFT's V0 (NVT, then NPT)."""
        model = self.manager.run_state.models[self.generation]
        start = atoms_to_dict(center.conventional.repeat(self.settings.md.supercell))
        inputs = {
            "structure": start,
            "potential": model["potential"],
            "active_set": model["active_set"],
            "settings": self.settings.md.model_dump(mode="json"),
            "temperature": md_temperature(self.config),
            "seed": self.config.loop.seed * 7_919 + self.generation * 31 + self.round,
        }
        return self.manager.run_one(
            "assess_md",
            self.generation,
            f"MD check gen {self.generation}",
            inputs,
            paths=("potential", "active_set"),
            workdir_name="md",
            needs=lambda result: self.manager.frames_damage(result["snapshots"]),  # they get reference DFT
        )

    def compare(
        self, v0: float, references: dict[str, dict[str, Any]], md: dict[str, Any] | None
    ) -> dict[str, Any]:
        model = self.manager.run_state.models[self.generation]
        inputs = {
            "ground_state": atoms_to_dict(self.crystal.conventional),
            "potential": model["potential"],
            "active_set": model["active_set"],
            "settings": self.settings.model_dump(mode="json"),
            "reference_volume": v0,
            "references": list(references.values()),
            "md": md,
        }
        return self.manager.run_one(
            "assess",
            self.generation,
            f"assessment gen {self.generation}",
            inputs,
            paths=("potential", "active_set"),
        )


def aimed_walkers(config: SystemConfig, assessment: dict[str, Any]) -> list[dict[str, Any]]:
    """Walkers aimed at what a failed assessment found wrong (docs/assessment.md, "What the loop does").

    E(V) or elastic constants: NPT at pressures that reach the ends of the assessed volume range; MD forces
    or stability: NVT and NPT hotter than the MD check; phonons: NVT at the lowest temperature in the phonon
    supercell; vacancy: NVT in a small cell with one vacancy. Each is {structure, temperature, pressure}.
    """
    crystal = Crystal.from_atoms(ground_state(config)).at_volume(assessment["reference_volume"])
    cell = repeated_to(crystal.conventional, MIN_AIMED_ATOMS)
    cold, hot = min(config.exploration.temperatures), md_temperature(config) * 1.25
    bulk_modulus = next((r["dft"] for r in assessment["rows"] if r["name"] == "B"), 100.0)
    pressure = bulk_modulus * config.assess.eos_volume_range
    walkers: list[dict[str, Any]] = []
    failed = set(assessment["failing"])
    if failed & {"eos", "elastic"}:
        walkers += [_walker(cell, cold, p, "the assessed crystal at DFT's V0") for p in (-pressure, pressure)]
    if "md_forces" in failed:
        walkers += [_walker(cell, hot, p, "the assessed crystal at DFT's V0") for p in (None, 0.0)]
    if "phonons" in failed:
        walkers.append(_walker(crystal.primitive.repeat(config.assess.phonon_supercell), cold, None,
                               "the phonon supercell"))
    if "vacancy" in failed:
        defect = cell.copy()
        del defect[0]
        walkers.append(_walker(defect, cold, None, "the vacancy cell"))
    return walkers


def _walker(atoms: Atoms, temperature: float, pressure: float | None, start: str) -> dict[str, Any]:
    """One aimed walker; its start is named in its task's label ("... from the phonon supercell")."""
    atoms = atoms.copy()
    atoms.info["source"] = start
    return {"structure": atoms_to_dict(atoms), "temperature": temperature, "pressure": pressure}


def _numbers(reference: dict[str, Any]) -> dict[str, Any]:
    atoms = atoms_from_dict(reference["structure"])
    return {"energy": reference["energy"], "n_atoms": len(atoms), "volume": atoms.get_volume()}
