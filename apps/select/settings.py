"""The `selection:` section of input.yaml: which uncertain frames go to DFT next."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class SelectionSettings(BaseModel):
    """Pick at most `max_per_generation` candidates, highest extrapolation grade first."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["max_gamma"] = "max_gamma"
    max_per_generation: PositiveInt = 8
    min_step_separation: PositiveInt = Field(
        20, description="MD steps; closer frames of one walker are near-duplicates (the higher gamma is kept)"
    )
