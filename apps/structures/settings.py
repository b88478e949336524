"""The `structures:` section of input.yaml: where the starting structures of the INIT step come from.

Either files the user already has (anything `ase.io.read` reads), or a crystal prototype built with
`ase.build.bulk` and perturbed (rattled, strained) so the first potential sees more than one geometry.
"""

from pathlib import Path
from typing import Literal

from ase.data import chemical_symbols
from ase.symbols import string2symbols
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

Prototype = Literal[
    "sc", "fcc", "bcc", "hcp", "diamond", "zincblende", "rocksalt", "cesiumchloride", "fluorite", "wurtzite"
]

# Atoms in the formula ase.build.bulk expects for each prototype ("Al", "NaCl", "CaF2").
FORMULA_SIZE: dict[str, int] = {
    "sc": 1, "fcc": 1, "bcc": 1, "hcp": 1, "diamond": 1,
    "zincblende": 2, "rocksalt": 2, "cesiumchloride": 2, "wurtzite": 2, "fluorite": 3,
}  # fmt: skip

# Prototypes without a cubic cell: `cubic: true` gives their orthorhombic cell instead.
NON_CUBIC = ("hcp", "wurtzite")


def formula_symbols(formula: str) -> list[str]:
    """Symbols of a formula as ase.build.bulk reads it; ValueError names what is wrong.

    >>> formula_symbols("CaF2")
    ['Ca', 'F', 'F']
    """
    try:
        symbols = string2symbols(formula)
    except ValueError:
        symbols = []
    unknown = [s for s in symbols if s not in chemical_symbols[1:]]
    if not symbols or unknown:
        raise ValueError(f"{formula!r} is not a chemical formula (examples: Al, NaCl, GaAs, CaF2)")
    return symbols


class GeneratorSettings(BaseModel):
    """A crystal prototype plus perturbed copies: ideal, `rattled` x Gaussian noise, `strained` x random strain,
    `scaled` x isotropic volume change (so the first potential sees E(V) on both sides of the minimum),
    `vacancies` x a cell with one atom missing, and one slab per Miller index in `surfaces`."""

    model_config = ConfigDict(extra="forbid")

    prototype: Prototype
    formula: str | None = Field(
        None, description="what ase.build.bulk takes: Al, NaCl, GaAs, CaF2; None = the first of `elements`"
    )
    a: PositiveFloat | None = Field(None, description="Angstrom; None = ASE's reference lattice constant")
    c: PositiveFloat | None = Field(None, description="Angstrom, hcp and wurtzite only; None = ASE's default")
    cubic: bool = Field(True, description="conventional cubic cell (orthorhombic for hcp, wurtzite)")
    supercell: tuple[PositiveInt, PositiveInt, PositiveInt] = (1, 1, 1)
    include_ideal: bool = True
    rattled: NonNegativeInt = Field(4, description="copies with Gaussian displacements")
    rattle_stdev: float = Field(0.1, gt=0, le=0.5, description="Angstrom, per Cartesian component")
    max_rattle_stdev: float = Field(
        0.2, gt=0, le=0.5, description="Angstrom; the rattled copies' stdevs spread evenly up to this"
    )
    strained: NonNegativeInt = Field(2, description="copies with a random symmetric strain")
    max_strain: float = Field(0.03, gt=0, le=0.2, description="largest strain component")
    scaled: NonNegativeInt = Field(
        0, description="copies scaled isotropically, volumes evenly spread over 1 +- max_volume_change"
    )
    max_volume_change: float = Field(0.1, gt=0, le=0.3, description="fraction of the ideal cell's volume")
    vacancies: NonNegativeInt = Field(
        0, description="rattled copies with one atom removed, in the cell repeated to at least 8 atoms"
    )
    surfaces: list[tuple[int, int, int]] = Field(
        default_factory=list, description="Miller indices of rattled slabs (ase.build.surface), e.g. [[1, 1, 1]]"
    )
    slab_layers: int = Field(4, ge=2, le=12, description="layers of each slab")
    slab_vacuum: float = Field(10.0, ge=5.0, le=30.0, description="Angstrom of vacuum between a slab's images")
    occupation: dict[str, PositiveFloat] | None = Field(
        None, description="alloys: fraction of each element on the sites of a one-species prototype"
    )
    sqs: bool = Field(False, description="decorate bulk cells as SQS (icet) instead of at random; needs occupation")
    end_members: bool = Field(
        True, description="alloys: one rattled cell of each pure element on the same lattice, so the fit can tell "
        "the elements' energies apart (cells of one composition cannot)",
    )

    @field_validator("formula")
    @classmethod
    def _known_symbols(cls, formula: str | None) -> str | None:
        if formula is not None:
            formula_symbols(formula)
        return formula

    @model_validator(mode="after")
    def _consistent(self) -> "GeneratorSettings":
        size = FORMULA_SIZE[self.prototype]
        if self.formula is None and size > 1:
            raise ValueError(f"formula is required for prototype {self.prototype} (e.g. NaCl, GaAs)")
        if self.formula is not None and len(formula_symbols(self.formula)) != size:
            raise ValueError(
                f"formula {self.formula!r} does not fit prototype {self.prototype}, "
                f"which needs a formula of {size} atom(s)"
            )
        if self.max_rattle_stdev < self.rattle_stdev:
            raise ValueError(
                f"max_rattle_stdev {self.max_rattle_stdev} is below rattle_stdev {self.rattle_stdev}: the rattled "
                "copies' displacements spread evenly from rattle_stdev up to max_rattle_stdev, so set "
                f"max_rattle_stdev to at least {self.rattle_stdev} (equal: every copy at rattle_stdev)."
            )
        if self.c is not None and self.prototype not in NON_CUBIC:
            raise ValueError(f"c is only used for hcp and wurtzite, not {self.prototype}")
        if self.occupation is not None:
            if size > 1:
                raise ValueError(
                    f"occupation decorates a one-species prototype (sc, fcc, bcc, hcp, diamond), not {self.prototype}"
                )
            for element in self.occupation:
                formula_symbols(element)
            if len(self.occupation) < 2 or abs(sum(self.occupation.values()) - 1) > 1e-6:
                raise ValueError(
                    f"occupation {self.occupation} must give two or more elements fractions that add up to 1, "
                    "e.g. {Al: 0.5, Cu: 0.5}"
                )
        if self.sqs and self.occupation is None:
            raise ValueError("sqs needs occupation (the alloy's composition), e.g. occupation: {Al: 0.5, Cu: 0.5}")
        if any(index == (0, 0, 0) for index in self.surfaces):
            raise ValueError("surfaces: (0, 0, 0) is not a plane; give Miller indices such as [1, 1, 1]")
        if not (self.include_ideal or self.rattled or self.strained or self.scaled or self.vacancies or self.surfaces):
            raise ValueError(
                "include_ideal is false, rattled, strained, scaled and vacancies are 0 and surfaces is empty: no "
                "structure would be made"
            )
        return self

    def with_formula(self, elements: list[str]) -> "GeneratorSettings":
        """Copy with the default formula (the first of `elements`) filled in."""
        return self.model_copy(update={"formula": self.formula or elements[0]})


class StructuresSettings(BaseModel):
    """Starting structures: files (paths relative to input.yaml), a prototype generator, or both."""

    model_config = ConfigDict(extra="forbid")

    files: list[Path] = Field(default_factory=list, description="read with ase.io.read(path, index=':')")
    generator: GeneratorSettings | None = None

    @model_validator(mode="after")
    def _some_source(self) -> "StructuresSettings":
        if not self.files and self.generator is None:
            raise ValueError("give `files`, a `generator`, or both: there are no starting structures")
        return self
