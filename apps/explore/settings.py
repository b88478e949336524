"""The `exploration:` section of input.yaml: MD walkers driven by the current potential."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator


class ExplorationSettings(BaseModel):
    """Langevin MD with the ACE potential; frames above `gamma_select` are candidates, `gamma_halt` stops a walker."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["ase"] = "ase"
    temperatures: list[PositiveFloat] = Field(default_factory=lambda: [300.0], min_length=1)
    walkers_per_temperature: PositiveInt = 1
    steps: PositiveInt = 500
    timestep_fs: PositiveFloat = 2.0
    friction: PositiveFloat = Field(0.01, description="Langevin friction, 1/fs")
    check_interval: PositiveInt = Field(10, description="steps between extrapolation-grade checks")
    gamma_select: PositiveFloat = 5.0
    gamma_halt: PositiveFloat = 25.0
    max_frames_per_walker: PositiveInt = 20
    min_distance: PositiveFloat = Field(
        0.5, description="Angstrom; a closer pair of atoms means the trajectory has collapsed (walker stops)"
    )

    @model_validator(mode="after")
    def _halt_above_select(self) -> "ExplorationSettings":
        if self.gamma_halt <= self.gamma_select:
            raise ValueError(
                f"gamma_halt ({self.gamma_halt}) must be larger than gamma_select ({self.gamma_select})"
            )
        return self
