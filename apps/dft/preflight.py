"""Checks made before any pw.x call: a structure DFT should not see, and a command that cannot run.

A structure that fails a check is *rejected* (a recorded result with its reason); a missing program is a
setup error (`DFTError`) because no structure could be labelled.
"""

import shlex
import shutil

from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from autopipe.errors import DFTError

INSTALL_HINT = (
    "Install Quantum ESPRESSO (Debian/Ubuntu: `apt-get install quantum-espresso quantum-espresso-data`; "
    "conda: `conda install -c conda-forge qe`) or load it on a cluster (`module load quantum-espresso`), "
    "or set dft.command to the full path of pw.x (a launcher may precede it: 'mpirun -np 4 pw.x')."
)


def rejection(atoms: Atoms, factor: float, *, needs_cell: bool) -> dict[str, str] | None:
    """`{kind, message}` saying why `atoms` must not be labelled, or None.

    Kinds: `no_atoms`; `no_cell` (a periodic structure, or any structure for pw.x, without cell volume);
    `too_close` (two atoms closer than `factor` x their covalent-radius sum).
    """
    if len(atoms) == 0:
        return {"kind": "no_atoms", "message": "the structure has no atoms"}
    if (needs_cell or any(atoms.pbc)) and atoms.cell.volume < 1e-6:
        return {
            "kind": "no_cell",
            "message": "the structure's cell has no volume; pw.x needs a periodic cell "
            "(put a molecule in a box with vacuum, e.g. ase's atoms.center(vacuum=6))",
        }
    cutoffs = factor * covalent_radii[atoms.numbers]
    first, second, dist = neighbor_list("ijd", atoms, cutoffs, self_interaction=False)
    if len(dist) == 0:
        return None
    k = int(dist.argmin())
    i, j = int(first[k]), int(second[k])
    limit = factor * (covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]])
    symbols = atoms.get_chemical_symbols()
    message = (
        f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {dist[k]:.3f} A apart, closer than "
        f"{factor} x their covalent radii sum ({limit:.3f} A; dft.min_distance_factor)"
    )
    return {"kind": "too_close", "message": message}


def resolve_command(command: str) -> list[str]:
    """Split `command` (launcher allowed) into an argument list; DFTError if a program in it is not found."""
    argv = shlex.split(command)
    if not argv:
        raise DFTError(f"dft.command is empty. {INSTALL_HINT}")
    # the launcher and the QE program (pw.x or a wrapper named like it); launcher options are not checked
    programs = [argv[0]] + [a for a in argv[1:] if a.rsplit("/", 1)[-1].startswith("pw") or a.endswith(".x")]
    for program in programs:
        if shutil.which(program) is None:
            raise DFTError(
                f"dft.command {command!r}: the program {program!r} is not found on PATH. {INSTALL_HINT}"
            )
    return argv
