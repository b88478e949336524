"""The `assess:` section of input.yaml: which properties the potential must reproduce against fresh DFT,
and how closely, before the run may call it usable (docs/assessment.md explains each one)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt

from autopipe.apps.explore.settings import Temperature

Property = Literal["eos", "elastic", "phonons", "vacancy", "md_forces"]
ALL_PROPERTIES: list[Property] = ["eos", "elastic", "phonons", "vacancy", "md_forces"]


class Tolerances(BaseModel):
    """The largest differences from DFT a production potential may show (defaults: docs/assessment.md)."""

    model_config = ConfigDict(extra="forbid")

    a0_percent: PositiveFloat = Field(1.0, description="equilibrium lattice constant, % of DFT's")
    bulk_modulus_percent: PositiveFloat = Field(10.0, description="bulk modulus B, % of DFT's")
    elastic_percent: PositiveFloat = Field(15.0, description="each of C11, C12, C44, % of DFT's")
    elastic_gpa: PositiveFloat = Field(5.0, description="GPa; a constant within this passes whatever its %")
    phonon_percent: PositiveFloat = Field(10.0, description="each frequency at the high-symmetry points")
    phonon_thz: PositiveFloat = Field(0.3, description="THz; a frequency within this passes whatever its %")
    vacancy_ev: PositiveFloat = Field(0.15, description="eV, unrelaxed vacancy formation energy")
    md_force_rmse_mev_a: PositiveFloat = Field(100.0, description="meV/A, force RMSE on MD snapshots")
    md_density_percent: PositiveFloat = Field(5.0, description="NPT mean volume against DFT's V0, %")


class MDCheckSettings(BaseModel):
    """MD driven by the potential, whose snapshots get fresh DFT forces."""

    model_config = ConfigDict(extra="forbid")

    supercell: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (2, 2, 2), description="repeats of the conventional cell; (2, 2, 2) of fcc = 32 atoms"
    )
    temperature: Temperature | None = Field(
        None, description="K; None = the highest exploration temperature"
    )
    steps: PositiveInt = Field(600, description="MD steps per ensemble (NVT, then NPT)")
    timestep_fs: PositiveFloat = 2.0
    snapshots: PositiveInt = Field(
        2, description="frames per ensemble sent to DFT, taken from the second half"
    )


class AssessSettings(BaseModel):
    """ASSESS: the potential against DFT it never saw; DONE needs a passing verdict."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false = DONE without an assessment (not recommended)")
    properties: list[Property] = Field(
        default_factory=lambda: list(ALL_PROPERTIES), min_length=1, description="what is compared"
    )
    tolerances: Tolerances = Field(default_factory=Tolerances)
    eos_points: int = Field(7, ge=7, le=31, description="volumes of the equation of state")
    eos_volume_range: float = Field(0.06, gt=0.01, le=0.2, description="+- fraction of V0 they span")
    strain: float = Field(0.01, gt=0, le=0.05, description="finite strain for the elastic constants")
    phonon_supercell: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (2, 2, 2), description="repeats of the primitive cell for finite displacements"
    )
    phonon_displacement: PositiveFloat = Field(0.01, le=0.1, description="Angstrom")
    vacancy_supercell: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (2, 2, 2), description="repeats of the conventional cell holding one vacancy"
    )
    md: MDCheckSettings = Field(default_factory=MDCheckSettings)
    max_rounds: NonNegativeInt = Field(
        2, description="times a failed verdict sends the loop back to EXPLORE aimed at the failure"
    )
