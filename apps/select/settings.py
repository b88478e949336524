"""The `selection:` section of input.yaml: which uncertain frames go to DFT next, and in what cell."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

Method = Literal["d_optimal", "max_gamma", "farthest_point", "random"]


class SelectionSettings(BaseModel):
    """Pick at most `max_per_generation` diverse candidates by `method`; cut large MD cells down for DFT."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        "d_optimal",
        description="d_optimal (MaxVol against the active set), max_gamma, farthest_point or random",
    )
    max_per_generation: PositiveInt = Field(
        4, description="most new DFT labels per generation; smaller batches refit sooner and need fewer labels",
    )
    min_step_separation: PositiveInt = Field(
        20,
        description="MD steps; closer frames of one walker are near-duplicates (the better-ranked is kept)",
    )
    duplicate_distance: float = Field(
        0.05,
        ge=0,
        description="fingerprint distance below which two structures are near-duplicates (0 = identical only)",
    )
    embed_above: PositiveInt = Field(
        64, description="atoms; a larger MD frame is cut down to the neighbourhood of its most uncertain atom"
    )
    embed_core_radius: PositiveFloat | None = Field(
        None,
        description="Angstrom; atoms this close to the uncertain atom train their forces (None = cutoff)",
    )
    embed_buffer: PositiveFloat = Field(
        3.0, description="Angstrom of untrained atoms around the core, so core forces see their neighbours"
    )
    embed_min_distance_factor: PositiveFloat = Field(
        0.75,
        le=1.0,
        description="atoms closer than this fraction of their covalent radii's sum across the new cell's "
        "boundary are dropped",
    )
