"""Average the generator weights of several fine-tunes of one model (a uniform "model soup",
Wortsman et al. 2022) into a new checkpoint that `vinterp evaluate --model` and `vinterp
export` take (run by hand; docs/training.md, "A weight average of the fine-tunes").

    .venv/bin/python benchmarks/model_soup.py runs/soup4.pt runs/ft_rev4/latest.pt \
        runs/ft_l50/latest.pt runs/ft_mix/latest.pt runs/ft360/latest.pt

The model and training configs are the first checkpoint's; every checkpoint must hold the
same weight names and shapes (fine-tunes from one start do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vinterp.checkpoint import load_checkpoint, model_state, save_checkpoint  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="the averaged checkpoint to write")
    ap.add_argument("checkpoints", nargs="+", help="fine-tunes of one model")
    args = ap.parse_args()
    states = [load_checkpoint(p) for p in args.checkpoints]
    gens = [s["generator"] for s in states]
    if any(g.keys() != gens[0].keys() for g in gens):
        raise SystemExit("the checkpoints hold different weights: not fine-tunes of one model")
    soup = {k: sum(g[k].float() for g in gens) / len(gens) if v.is_floating_point() else v
            for k, v in gens[0].items()}
    first = states[0]
    path = save_checkpoint(args.out, model_state(
        first["model_config"], soup, train_config=first.get("train_config"),
        epoch=first.get("epoch"), step=first.get("step"), preset=first.get("preset"),
        extra={"soup_of": [str(p) for p in args.checkpoints]}))
    print(f"wrote {path}: the mean of {len(gens)} generators")


if __name__ == "__main__":
    main()
