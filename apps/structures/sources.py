"""What the `source` of a generated structure says, where the fit depends on it.

The generator makes one slab per Miller index and one pure cell per element of an alloy. Each is the only
structure of its kind, so the fixed validation split must not take it: a held-out slab left a loop with
no surface at all (docs/benchmarks.md), a held-out end member left the elements' energies unplaced.
"""

import re

END_MEMBER = "end member"  # "fcc-Cu end member"
SLAB = re.compile(r"\(\d+\) slab, \d+ layers$")  # "fcc-Al (111) slab, 4 layers"


def slab_source(name: str, miller: str, layers: int) -> str:
    return f"{name} ({miller}) slab, {layers} layers"


def is_reference(source: str) -> bool:
    """A structure the fit always trains on: a generated slab or an alloy's pure end member."""
    return source.endswith(END_MEMBER) or SLAB.search(source) is not None
