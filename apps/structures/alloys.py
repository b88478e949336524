"""Chemical decoration of a one-species prototype for alloys (`structures.generator.occupation`): each cell
drawn at random with the exact composition, or as a special quasirandom structure (SQS, icet), whose
short-range correlations are those of the infinite random alloy, so few cells already look random."""

from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk

PAIR_CUTOFF = 1.75  # x nearest-neighbour distance: SQS pairs up to the second neighbours
TRIPLET_CUTOFF = 1.15  # x nearest-neighbour distance: nearest-neighbour triplets


def counts(n_sites: int, occupation: dict[str, float]) -> dict[str, int]:
    """Atoms of each element on `n_sites` sites, rounded so they add up (largest remainder).

    >>> counts(7, {"Al": 0.5, "Cu": 0.5})
    {'Al': 4, 'Cu': 3}
    """
    exact = {el: fraction * n_sites for el, fraction in sorted(occupation.items())}
    result = {el: int(np.floor(x)) for el, x in exact.items()}
    for el in sorted(exact, key=lambda e: result[e] - exact[e])[: n_sites - sum(result.values())]:
        result[el] += 1
    return result


def random_decoration(atoms: Atoms, occupation: dict[str, float], rng: np.random.Generator) -> Atoms:
    """`atoms` with its sites given the elements of `occupation` in a random order, exact counts."""
    symbols = [el for el, n in counts(len(atoms), occupation).items() for _ in range(n)]
    decorated = atoms.copy()
    decorated.set_chemical_symbols(list(rng.permutation(symbols)))
    return decorated


def sqs_decoration(cell: Atoms, space: Any, occupation: dict[str, float], seed: int) -> Atoms:
    """`cell` (an unperturbed supercell of the prototype) decorated as an SQS by icet's simulated annealing
    against the random alloy's cluster vector in `space` (`sqs_cluster_space`)."""
    from icet.tools.structure_generation import generate_sqs_from_supercells

    exact = {el: n / len(cell) for el, n in counts(len(cell), occupation).items()}
    sqs = generate_sqs_from_supercells(space, [cell], target_concentrations=exact, random_seed=seed)
    decorated = cell.copy()
    decorated.set_chemical_symbols(sqs.get_chemical_symbols())
    return decorated


def sqs_cluster_space(prototype: dict[str, Any], occupation: dict[str, float]) -> Any:
    """icet's cluster space of the prototype's lattice: pairs to second neighbours, nearest-neighbour
    triplets; built once per generator, shared by its SQS cells."""
    from icet import ClusterSpace  # imported here: a second or more, and only alloys need it

    primitive = bulk(**prototype)
    nearest = float(np.sort(primitive.repeat(2).get_all_distances(mic=True)[0])[1])
    return ClusterSpace(primitive, cutoffs=[PAIR_CUTOFF * nearest, TRIPLET_CUTOFF * nearest],
                        chemical_symbols=[sorted(occupation)])
