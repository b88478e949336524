"""The `exploration:` section of input.yaml: MD walkers driven by the current potential."""

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

#: Kelvin: hotter than any element boils (tungsten: about 5,900 K) three times over; beyond it an ACE
#: potential fitted to condensed matter explores nothing it can describe.
MAX_TEMPERATURE_K = 20_000.0
#: GPa, either sign: a terapascal, the reach of the strongest static compression experiments.
MAX_PRESSURE_GPA = 1_000.0

Temperature = Annotated[float, Field(gt=0, le=MAX_TEMPERATURE_K, allow_inf_nan=False)]
Pressure = Annotated[float, Field(ge=-MAX_PRESSURE_GPA, le=MAX_PRESSURE_GPA, allow_inf_nan=False)]


class ExplorationSettings(BaseModel):
    """MD with the ACE potential; frames above `gamma_select` are candidates, `gamma_halt` stops a walker."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["ase", "lammps"] = Field(
        "ase", description="MD engine: ASE with pyace's calculator, or LAMMPS (docs/exploration.md)"
    )
    temperatures: list[Temperature] = Field(default_factory=lambda: [300.0], min_length=1, description="K")
    walkers_per_temperature: PositiveInt = 1
    ensembles: list[Literal["nvt", "npt"]] = Field(
        default_factory=lambda: ["nvt", "npt"], min_length=1,
        description="each temperature runs its walkers in each: NVT (Langevin), NPT (MTK) at each pressure",
    )
    pressures: list[Pressure] = Field(default_factory=lambda: [0.0], min_length=1, description="GPa, for NPT")
    steps: PositiveInt = 500
    timestep_fs: PositiveFloat = 2.0
    friction: PositiveFloat = Field(0.01, description="Langevin friction, 1/fs")
    check_interval: PositiveInt = Field(10, description="steps between extrapolation-grade checks")
    gamma_select: PositiveFloat = 5.0
    gamma_halt: PositiveFloat = 25.0
    max_frames_per_walker: PositiveInt = 20
    continue_walkers: bool = Field(
        True, description="each walker of the schedule continues from where its predecessor last trusted the "
        "potential (its last frame below gamma_select), instead of starting from the next labelled structure",
    )
    min_distance: PositiveFloat = Field(
        0.5, description="Angstrom; a closer pair of atoms means the trajectory has collapsed (walker stops)"
    )

    @field_validator("ensembles")
    @classmethod
    def _each_once(cls, ensembles: list[str]) -> list[str]:
        if len(set(ensembles)) != len(ensembles):
            raise ValueError(f"{ensembles} lists an ensemble twice; list nvt and/or npt once each")
        return ensembles

    def schedule(self) -> list[tuple[float, float | None]]:
        """(temperature, pressure or None for NVT) of every walker of a generation, in a fixed order."""
        conditions = [
            (t, p)
            for t in self.temperatures
            for ensemble in self.ensembles
            for p in ([None] if ensemble == "nvt" else self.pressures)
        ]
        return [c for c in conditions for _ in range(self.walkers_per_temperature)]

    @model_validator(mode="after")
    def _halt_above_select(self) -> "ExplorationSettings":
        if self.gamma_halt <= self.gamma_select:
            raise ValueError(
                f"gamma_halt ({self.gamma_halt}) must be larger than gamma_select ({self.gamma_select})"
            )
        return self
