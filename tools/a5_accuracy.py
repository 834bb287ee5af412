"""The accuracy distribution behind a5-transfer's hidden thresholds, and what transfer gains.

Runs the solution notebook's own cells (``solutions/a5-transfer/transfer.ipynb``: the
imports, the data, the three set-up functions, the fine-tuning cell, ``predict`` and the
comparison's training functions) once per seed, on one thread as when grading. Each seed
draws its own 20 training images (5 per class) and seeds the weights and the
augmentation, so the spread covers both what a student's seed and what their few
labelled images change. For every seed it prints the test accuracy of

- ``predict`` (the fine-tuned network of the notebook's recipe), on held-out images that
  are neither the notebook's nor the hidden checks';
- the same budget from scratch, and feature extraction (the comparison's functions);

then the minimum, mean and maximum of each. The hidden cells' thresholds must stay well
below the worst seed of ``predict``.

Usage: ``python tools/a5_accuracy.py [--seeds 12] [--notebook-data]``
(``--notebook-data`` keeps the notebook's own 20 training images for every seed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "a5-transfer" / "transfer.ipynb"
CELLS = ("imports", "data", "freeze_backbone", "replace_head", "param_groups", "finetune",
         "predict", "task_comparison_code")


def cell_sources(path=NOTEBOOK):
    """{grade_id: source} of the cells the runs need (the comparison without its runs)."""
    out = {}
    for cell in json.loads(Path(path).read_text())["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in CELLS:
            source = "".join(cell["source"])
            source = "\n".join(line for line in source.splitlines()
                               if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
            if gid == "task_comparison_code":
                source = source.split("\nmethods = ")[0]  # the training functions only
            if gid == "finetune":
                source = source.split("\nfinetuned = ")[0]  # the recipe, not its run
            out[gid] = source.replace("plt.show()", "plt.close('all')")
    missing = [c for c in CELLS if c not in out]
    if missing:
        raise SystemExit(f"{path} lacks the cells {missing}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--notebook-data", action="store_true",
                        help="train every seed on the notebook's own 20 images")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sources = cell_sources()
    ns = {"__name__": "__a5_accuracy__"}
    for gid in ("imports", "data", "freeze_backbone", "replace_head", "param_groups"):
        exec(compile(sources[gid], gid, "exec"), ns)  # noqa: S102 - the course's own cells
    from cnnlib.grading.a5_task import target_images
    from cnnlib.torch import evaluate

    x_held, y_held = target_images(1000, seed=314159)
    rows = {"predict (fine-tuned)": [], "from scratch": [], "feature extraction": []}
    start = time.perf_counter()
    for seed in range(args.seeds):
        if not args.notebook_data:
            ns["x_train"], ns["y_train"] = target_images(20, seed=10_000 + seed)
        ns["SEED"] = seed
        for gid in ("finetune", "task_comparison_code"):
            exec(compile(sources[gid], gid, "exec"), ns)  # noqa: S102
        ns["finetuned"] = ns["finetune"](seed)
        exec(compile(sources["predict"], "predict", "exec"), ns)  # noqa: S102
        labels = ns["predict"](x_held)
        rows["predict (fine-tuned)"].append(float(np.mean(labels == y_held)))
        for name, fn in (("from scratch", "from_scratch"),
                         ("feature extraction", "feature_extraction")):
            net = ns[fn](seed)
            rows[name].append(evaluate(net, (x_held, y_held), device="cpu").accuracy)
        print(f"seed {seed:>2}: " + "  ".join(f"{k} {v[-1]:.1%}" for k, v in rows.items()),
              flush=True)
    print(f"\n{args.seeds} seeds, {len(y_held)} held-out images, "
          f"{time.perf_counter() - start:.0f} s on one thread")
    for name, accs in rows.items():
        a = np.array(accs)
        print(f"{name:<22} min {a.min():.1%}  mean {a.mean():.1%}  max {a.max():.1%}  "
              f"sorted {' '.join(f'{v:.1%}' for v in np.sort(a))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
