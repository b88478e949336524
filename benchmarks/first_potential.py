"""The first potential of a lean start against the basis size: is 150 functions too many for 8 cells?

With the default basis (`accuracy: standard`, 150 functions per element) and a lean start, the loop's
generation-0 potential gave 103-318 meV/A on Al's hot held-out frames (docs/benchmarks.md). This fits the
same lean starting cells (EMT labels, `lean_start` of sample_efficiency.py, 32-atom cells) with fewer
functions per element and measures each fit on the same held-out set, to see whether a basis that grows
with the data would keep the first potential under the 100 meV/A bound. The fit holds out validation
cells as the loop's does (at least one starting cell).

It also varies what the fit is given: the rattle of the starting cells (`--rattle`, `--max-rattle`; default:
the product generator's), slabs among them (`--surfaces 100`) and the ridge penalty (`--l2`).

    .venv/bin/python benchmarks/first_potential.py [--systems Al Cu] [--seeds 0 1 2] [--functions 150 100 60 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from sample_efficiency import (
    FULL,
    NAMESPACE,
    SYSTEMS,
    TRAINING,
    emt_a0,
    evaluate,
    fit_frames,
    held_out_set,
    ideal_cell,
    labelled,
    lean_start,
    starting_structures,
)

from autopipe.apps.train import TrainingFailure, linear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["Al", "Cu"], choices=list(SYSTEMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--functions", nargs="+", type=int, default=[150, 100, 60, 30])
    parser.add_argument("--accuracy", default="standard", choices=["fast", "standard", "precise"])
    parser.add_argument("--core-margin", type=float, default=linear.CORE_MARGIN,
                        help="A between the data's shortest pair and the ZBL core (the trainer's CORE_MARGIN)")
    parser.add_argument("--core-width", type=float, default=linear.CORE_WIDTH,
                        help="A over which ACE switches to ZBL (the trainer's CORE_WIDTH)")
    parser.add_argument("--l2", type=float, default=None,
                        help="ridge alpha (training.l2_coeff); default: the product's")
    parser.add_argument("--rattle", type=float, default=None,
                        help="rattle_stdev of the lean start (A); default: the benchmark's lean start")
    parser.add_argument("--max-rattle", type=float, default=None,
                        help="max_rattle_stdev of the lean start (A): rattled copies spread up to it")
    parser.add_argument("--surfaces", nargs="+", default=[], metavar="HKL",
                        help="Miller indices (e.g. 100 111): one rattled slab each in the lean start")
    parser.add_argument("--slab-layers", type=int, default=4, help="layers of each slab")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    linear.CORE_MARGIN, linear.CORE_WIDTH = args.core_margin, args.core_width  # what-if: the trainer reads these
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems:
            system = SYSTEMS[name]
            a0 = emt_a0(system, FULL)
            test = held_out_set(system, a0, FULL)
            eos_cell = ideal_cell(system, a0, FULL.supercell, np.random.default_rng(0))
            generator = lean_start(system)
            if args.rattle is not None:
                generator["rattle_stdev"] = args.rattle
            if args.max_rattle is not None:
                generator["max_rattle_stdev"] = args.max_rattle
            if args.surfaces:
                generator["surfaces"] = [[int(i) for i in hkl] for hkl in args.surfaces]
                generator["slab_layers"] = args.slab_layers
            for seed in args.seeds:
                cells = [labelled(s, category="start", config_type="initial", generation=0,
                                  uuid=str(uuid.uuid5(NAMESPACE, f"{name}/first/{seed}/{i}")))
                         for i, s in enumerate(starting_structures(system, a0, FULL, generator, seed))]
                for functions in args.functions:
                    training = {**TRAINING, "accuracy": args.accuracy, "functions_per_element": functions}
                    if args.l2 is not None:
                        training["l2_coeff"] = args.l2
                    workdir = Path(tmp) / f"{name}_{seed}_{functions}"
                    try:
                        fitted = fit_frames(cells, training, list(system.elements), workdir)
                    except TrainingFailure as failure:
                        rows.append({"system": name, "seed": seed, "functions": functions, "failed": str(failure)})
                        continue
                    scores = evaluate(Path(fitted["potential"]), fitted["reference"], test, eos_cell)
                    row = {"system": name, "seed": seed, "functions": functions, "core_margin": args.core_margin,
                           "core_width": args.core_width, "cells": len(cells),
                           "atoms": sum(len(c) for c in cells), "fit_s": fitted["fit_s"],
                           "force_rmse_mev_a": scores["force_rmse_mev_a"],
                           "energy_rmse_mev_atom": scores["energy_rmse_mev_atom"],
                           "by_category": {k: v["force_rmse_mev_a"] for k, v in scores["by_category"].items()},
                           "eos": scores["eos"]}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| system | seed | functions | test F (meV/A) | test E (meV/atom) | worst category F | a0 / B % |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "failed" in row:
            print(f"| {row['system']} | {row['seed']} | {row['functions']} | not fittable | | | |")
            continue
        worst = max(row["by_category"].items(), key=lambda item: item[1])
        eos = row["eos"]
        eos_text = ("no minimum" if eos["a0_error_pct"] is None
                    else f"{eos['a0_error_pct']:.2f} / {eos['bulk_modulus_error_pct']:.1f}")
        print(f"| {row['system']} | {row['seed']} | {row['functions']} | {row['force_rmse_mev_a']:.1f} | "
              f"{row['energy_rmse_mev_atom']:.1f} | {worst[0]} {worst[1]:.1f} | {eos_text} |")
    print(f"wall time {time.monotonic() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
