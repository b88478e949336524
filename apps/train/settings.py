"""The `training:` section of input.yaml: how the ACE potential is fitted each generation."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt


class TrainingSettings(BaseModel):
    """Pacemaker/ACE fit settings; `linear` fits in seconds, `nonlinear` runs the pacemaker CLI."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["linear", "nonlinear"] = "linear"
    accuracy: Literal["fast", "standard", "precise"] = "standard"
    cutoff: PositiveFloat = Field(5.0, description="Angstrom")
    functions_per_element: PositiveInt | None = Field(None, description="None = by accuracy")
    test_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 42
    kappa: float = Field(0.3, ge=0, le=1, description="force vs energy weight in the loss")
    max_iterations: PositiveInt = 100
    timeout: PositiveFloat = 3600.0
