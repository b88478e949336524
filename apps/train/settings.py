"""The `training:` section of input.yaml: how the ACE potential is fitted each generation.

Fields left as None are filled from the `accuracy` preset by the model validator, so a dumped model
(the expanded config stored in the event log) always holds the concrete values that were used.
"""

from typing import Literal, Self

from ase.data import chemical_symbols
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

# Basis size per accuracy preset. The orders lists are Pacemaker's `nradmax_by_orders` / `lmax_by_orders`
# (entry k = body order k+2); `functions_per_element` then keeps the simplest functions (Pacemaker's
# power-order ranking), so it is a cap: a small orders list can give fewer.
PRESETS: dict[str, dict[str, int | list[int]]] = {
    "fast": {"functions_per_element": 50, "nradmax_by_orders": [10, 4, 2], "lmax_by_orders": [0, 2, 1]},
    "standard": {
        "functions_per_element": 150,
        "nradmax_by_orders": [12, 5, 3, 2],
        "lmax_by_orders": [0, 3, 2, 1],
    },
    "precise": {
        "functions_per_element": 500,
        "nradmax_by_orders": [15, 6, 4, 3, 2],
        "lmax_by_orders": [0, 4, 3, 2, 1],
    },
}
# Embedding F(rho) = sum_k a_k * rho_k ** b_k with fs_parameters [a_1, b_1, a_2, b_2, ...]; linear mode needs
# the single linear density [1, 1] so that the energy is linear in the coefficients.
LINEAR_EMBEDDING = {"ndensity": 1, "fs_parameters": [1.0, 1.0]}
NONLINEAR_EMBEDDING = {"ndensity": 2, "fs_parameters": [1.0, 1.0, 1.0, 0.5]}


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

    nradmax_by_orders: list[PositiveInt] | None = Field(None, description="None = by accuracy")
    lmax_by_orders: list[NonNegativeInt] | None = Field(None, description="None = by accuracy")
    radial_basis: Literal["SBessel", "ChebExpCos", "ChebPow"] = "SBessel"
    radial_parameters: list[float] = Field(default_factory=lambda: [5.25], min_length=1)
    ndensity: PositiveInt | None = Field(None, description="None = 1 (linear) or 2 (nonlinear)")
    fs_parameters: list[float] | None = Field(None, description="None = [1, 1] (linear) or [1, 1, 1, 0.5]")
    l1_coeff: NonNegativeFloat = Field(1e-8, description="L1 penalty on coefficients (nonlinear only)")
    l2_coeff: NonNegativeFloat = Field(1e-8, description="L2 penalty (ridge alpha in linear mode)")
    optimizer: Literal["BFGS", "L-BFGS-B"] = "BFGS"
    batch_size: PositiveInt = 100
    backend: Literal["auto", "tensorpot", "pyace"] = "auto"
    reference_energy: Literal["auto"] | dict[str, float] = Field(
        "auto", description="eV per isolated atom by element, or 'auto' (Pacemaker's least squares)"
    )
    repulsion: Literal["auto", "none"] = Field(
        "auto", description="ZBL core below the shortest distance in data"
    )
    committee_size: NonNegativeInt = Field(
        0, description="0 = no committee; else >= 2 linear bootstrap models"
    )

    @field_validator("reference_energy")
    @classmethod
    def _known_elements(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(chemical_symbols[1:]))
            if unknown:
                raise ValueError(
                    f"training.reference_energy has keys {unknown} that are not element symbols; give "
                    "'auto' or a mapping like {Al: -0.45} (eV of the isolated atom with your DFT settings)."
                )
        return value

    @field_validator("committee_size")
    @classmethod
    def _committee_of_two_or_more(cls, value: int) -> int:
        if value == 1:
            raise ValueError(
                "training.committee_size is 1: a committee needs at least 2 models (0 turns it off)."
            )
        return value

    @model_validator(mode="after")
    def _resolve_presets(self) -> Self:
        """Fill None fields from the accuracy preset and the mode, then check that they fit together."""
        preset = PRESETS[self.accuracy]
        for name in ("functions_per_element", "nradmax_by_orders", "lmax_by_orders"):
            if getattr(self, name) is None:
                setattr(self, name, preset[name])
        if len(self.nradmax_by_orders) != len(self.lmax_by_orders) or len(self.nradmax_by_orders) > 6:
            raise ValueError(
                f"training.nradmax_by_orders {self.nradmax_by_orders} and training.lmax_by_orders "
                f"{self.lmax_by_orders} must have the same length (one entry per body order, at most 6)."
            )
        if self.lmax_by_orders[0] != 0:
            raise ValueError(
                f"training.lmax_by_orders starts with {self.lmax_by_orders[0]}: the first (two-body) order has "
                "no angular part, so its lmax must be 0, e.g. [0, 3, 2, 1]."
            )
        embedding = LINEAR_EMBEDDING if self.mode == "linear" else NONLINEAR_EMBEDDING
        if self.mode == "linear" and (self.ndensity or 1) != 1:
            raise ValueError(
                f"training.ndensity is {self.ndensity} but mode is 'linear', which fits a linear embedding "
                "(ndensity 1). Use mode: nonlinear for several densities, or drop ndensity."
            )
        if self.ndensity is None:
            self.ndensity = embedding["ndensity"]
        if self.fs_parameters is None:
            self.fs_parameters = (
                embedding["fs_parameters"] if self.ndensity == embedding["ndensity"] else None
            )
        if self.fs_parameters is None or len(self.fs_parameters) != 2 * self.ndensity:
            raise ValueError(
                f"training.fs_parameters {self.fs_parameters} must hold 2 numbers (scale, exponent) per density, "
                f"i.e. {2 * self.ndensity} for ndensity {self.ndensity}."
            )
        if self.mode == "linear" and self.fs_parameters != LINEAR_EMBEDDING["fs_parameters"]:
            raise ValueError(
                f"training.fs_parameters {self.fs_parameters} is not allowed in linear mode, whose embedding "
                "must be [1, 1] (F(rho) = rho). Use mode: nonlinear, or drop fs_parameters."
            )
        return self
