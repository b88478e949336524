"""Draw docs/figures/embedding.png: how SELECT cuts an uncertain atom's neighbourhood out of a large MD cell.

A 1.6 A thick slice through the centre atom of a compressed and thermally rattled fcc Al supercell (500 atoms,
a = 3.95 A), embedded with a 5 A core (the potential's cutoff) and a 3 A buffer, the defaults.
Run: python docs/figures/embedding.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from ase.build import bulk
from ase.geometry import get_distances

from autopipe.apps.select import embed

CORE, BUFFER, MIN_DISTANCE, SLICE = 5.0, 3.0, 0.75, 0.8
OUTPUT = Path(__file__).with_suffix(".png")


def main() -> None:
    frame = bulk("Al", "fcc", a=3.95, cubic=True) * (5, 5, 5)
    frame.rattle(0.12, seed=4)
    centre = 262
    cube = embed(frame, centre, CORE, BUFFER, MIN_DISTANCE)
    everything = embed(frame, centre, CORE, BUFFER, 1e-6)
    half = CORE + BUFFER
    kept = cube.positions - half
    dropped = np.array(
        [p for p in everything.positions - half if np.linalg.norm(kept - p, axis=1).min() > 1e-6]
    )
    around, _ = get_distances(frame.positions[centre], frame.positions, cell=frame.cell, pbc=True)
    around = around[0]

    fig, ax = plt.subplots(figsize=(6.4, 7.2), dpi=150)
    in_slice = np.abs(around[:, 2]) < SLICE
    outside = in_slice & np.any(np.abs(around) >= half, axis=1)
    ax.scatter(*around[outside, :2].T, s=30, c="0.85", label="MD frame outside the cube")
    core, buffer = cube.arrays["force_mask"], ~cube.arrays["force_mask"]
    for mask, style in [
        (buffer, {"c": "tab:orange", "label": "buffer: force_mask 0"}),
        (core, {"c": "tab:blue", "label": "core: force_mask 1"}),
    ]:
        chosen = mask & (np.abs(kept[:, 2]) < SLICE)
        ax.scatter(*kept[chosen, :2].T, s=45, edgecolors="k", linewidths=0.5, **style)
    if len(dropped):
        chosen = np.abs(dropped[:, 2]) < SLICE
        ax.scatter(
            *dropped[chosen, :2].T, s=60, marker="x", c="tab:red", label="dropped: too close to an image"
        )
    ax.scatter(
        [0], [0], s=140, marker="*", c="gold", edgecolors="k", zorder=5, label="uncertain atom (max gamma)"
    )
    ax.add_patch(plt.Circle((0, 0), CORE, fill=False, ls="--", color="tab:blue"))
    ax.add_patch(
        plt.Circle(
            (0, 0), CORE + BUFFER, fill=False, ls=":", color="tab:orange", label="core radius + buffer"
        )
    )
    ax.add_patch(plt.Rectangle((-half, -half), 2 * half, 2 * half, fill=False, lw=1.5, color="k"))
    ax.annotate(
        f"core radius {CORE:g} A\n(potential cutoff)",
        (CORE * 0.71, -CORE * 0.71),
        (2.5, -10.3),
        arrowprops={"arrowstyle": "->"},
        fontsize=8,
    )
    ax.annotate(
        f"periodic cube, side 2 x ({CORE:g} + {BUFFER:g}) A",
        (half, half - 1),
        (-half, half + 0.6),
        fontsize=8,
    )
    ax.set_xlim(-half - 2.5, half + 2.5)
    ax.set_ylim(-half - 2.5, half + 2.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x - x_centre (A)")
    ax.set_ylabel("y - y_centre (A)")
    ax.set_title(
        f"Embedding: {len(frame)}-atom MD cell -> {len(cube)}-atom cell "
        f"({int(core.sum())} core, {cube.info['n_dropped']} dropped); slice |z| < {SLICE} A",
        fontsize=9,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, fontsize=7)
    fig.tight_layout()
    fig.savefig(OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
