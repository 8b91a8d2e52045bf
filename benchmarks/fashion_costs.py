"""Wall time of each Fashion-MNIST benchmark config at its quick size, and whether plain Adam
loses plasticity there: eight seeds trained together (one vectorised program, references
included), then the seeds' mean plasticity score per task.

    python benchmarks/fashion_costs.py [--seeds 8] [--out runs/fashion_costs] [NAME ...]

NAME: permuted_online, split, random_labels, drifting (default: all four).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ntkplast import training

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("permuted_online", "split", "random_labels", "drifting")

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("names", nargs="*", default=list(CONFIGS))
parser.add_argument("--seeds", type=int, default=8)
parser.add_argument("--out", default=str(ROOT / "runs" / "fashion_costs"))
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
args = parser.parse_args()
for name in args.names:
    cfg = training.load_config(ROOT / "configs" / "benchmarks" / "fashion" / f"{name}.toml",
                               args.set)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    runs = training.train_seeds(cfg, seeds, [Path(args.out) / name / f"seed{s}" for s in seeds],
                                progress=False)
    wall = time.perf_counter() - start
    scores = np.array([[t["plasticity_score"] for t in r.manifest["tasks"]] for r in runs])
    print(f"{name}: {len(scores[0])} tasks, {wall:.0f} s for {len(seeds)} seeds; mean "
          f"{runs[0].manifest['tasks'][0]['plasticity_measure']} per task: "
          + " ".join(f"{v:.3f}" for v in scores.mean(0)))
