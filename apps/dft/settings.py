"""The `dft:` section of input.yaml: what a label costs and how it is computed.

Fields left as None are chosen per structure by the parameter heuristics (from the pseudopotentials,
the cell and the `accuracy` preset) and recorded with each label, so every stored number says how it was made.
"""

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

DEFAULT_PSEUDO_DIR = Path("/usr/share/espresso/pseudo")

# pw.x keys the factory writes itself (from the fields above or the structure); dft.pw_input may not set them.
# fmt: off
MANAGED_PW_KEYS = {
    "control": {"calculation", "tprnfor", "tstress", "outdir", "pseudo_dir", "prefix", "disk_io", "verbosity",
                "restart_mode"},
    "system": {"ibrav", "nat", "ntyp", "ecutwfc", "ecutrho", "occupations", "smearing", "degauss", "nspin", "nbnd",
               "starting_magnetization", "celldm", "a", "b", "c", "cosab", "cosac", "cosbc"},
    "electrons": {"conv_thr", "mixing_beta", "electron_maxstep", "diagonalization", "startingpot", "startingwfc"},
}
# fmt: on


#: Settings that change how a label is run but not what it computes: not part of a label's task key, and
#: free to change when a run is resumed (e.g. on another site, with a longer time limit).
OPERATIONAL_KEYS = frozenset({"command", "timeout", "max_attempts", "omp_num_threads", "max_failed_fraction"})


class DFTSettings(BaseModel):
    """Settings of the DFT labelling stage (engine `qe` = Quantum ESPRESSO pw.x; `emt` = ASE's EMT reference)."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["qe", "emt"] = "qe"
    command: str = Field("pw.x", description="pw.x command, may carry a launcher: 'mpirun -np 2 pw.x'")
    pseudo_dir: Path = DEFAULT_PSEUDO_DIR
    pseudopotentials: dict[str, str] = Field(default_factory=dict, description="element -> UPF file name")
    accuracy: Literal["fast", "standard", "precise"] = "standard"
    ecutwfc: PositiveFloat | None = Field(None, description="Ry; None = from the pseudopotentials")
    ecutrho: PositiveFloat | None = Field(None, description="Ry; None = 4x (NC) or 8x (US/PAW) ecutwfc")
    kspacing: PositiveFloat | None = Field(None, description="1/Angstrom incl. 2*pi; None = by accuracy")
    smearing: Literal["mv", "gaussian", "mp", "fd"] = "mv"
    degauss: PositiveFloat | None = Field(None, description="Ry; None = by accuracy")
    spin: Literal["auto", "on", "off"] = "auto"
    conv_thr: PositiveFloat | None = Field(None, description="Ry per atom; None = by accuracy")
    mixing_beta: float = Field(0.7, gt=0, le=1)
    electron_maxstep: PositiveInt = 100
    timeout: PositiveFloat = Field(3600.0, description="seconds per pw.x attempt")
    max_attempts: PositiveInt = Field(4, description="attempts per label incl. recoveries")
    omp_num_threads: PositiveInt = 1
    min_distance_factor: float = Field(
        0.5, gt=0, le=1, description="reject atoms closer than this x covalent sum"
    )
    max_failed_fraction: float = Field(
        0.5, ge=0, le=1, description="run stops if more labels of a generation fail"
    )
    pw_input: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="extra pw.x namelist values written as given, e.g. {electrons: {mixing_mode: local-TF}}",
    )

    @field_validator("pw_input")
    @classmethod
    def _pw_input_leaves_managed_keys_alone(
        cls, value: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """Keys are compared as pw.x reads them (case, spaces and an array index ignored), so neither
        `"calculation "` nor `ECUTWFC` nor `starting_magnetization(1)` slips past the managed set; they are
        stored normalised, so what is checked is what pw.in gets."""
        normalised: dict[str, dict[str, Any]] = {}
        for section, entries in value.items():
            name = namelist_key(section)
            if name not in MANAGED_PW_KEYS:
                raise ValueError(
                    f"dft.pw_input.{section}: unknown namelist; allowed: {', '.join(sorted(MANAGED_PW_KEYS))}"
                )
            if name in normalised:
                raise ValueError(f"dft.pw_input.{section}: the namelist {name} is given twice")
            normalised[name] = {}
            for key, setting in entries.items():
                written = namelist_key(str(key))
                if written.split("(")[0] in MANAGED_PW_KEYS[name]:
                    raise ValueError(
                        f"dft.pw_input.{section}.{key} is chosen by the DFT factory; set it with the dft "
                        "settings (ecutwfc, ecutrho, kspacing, smearing, degauss, spin, conv_thr, mixing_beta, "
                        "electron_maxstep) instead"
                    )
                if written in normalised[name]:
                    raise ValueError(f"dft.pw_input.{section}.{key}: {written} is given twice")
                normalised[name][written] = setting
        return normalised


def namelist_key(key: str) -> str:
    """A namelist variable as Fortran reads it: case-insensitive, blanks ignored (`"Ecutwfc (1) "` ->
    `ecutwfc(1)`)."""
    return re.sub(r"\s+", "", key).lower()
