"""DPO training: reference log-probs computed once before training vs recomputed at every step.

The same preference set (NLGraph shortest-path prompts with answers of realistic length), the same
LoRA settings and seed; each variant trains in its own process so that its peak memory is its own.
Prints pairs/s (pairs x epochs / wall time, the precomputation included) and peak RSS of each, and
their ratios. The two variants run at the same time, each on half the cores, so that whatever else the
machine is doing slows both alike. Run one after the other on a shared machine, their ratio measured
the load: one such run here gave 0.50x, the precomputing half having met more contention.

    .venv/bin/python benchmarks/dpo.py [--pairs 24] [--epochs 2] [--batch-size 4]
"""
import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time

import pandas as pd
import torch

from wow_core.backends.transformers_backend import resolve_model_path
from wow_core.config import TrainConfig
from wow_core.datasets import nlgraph_shortest_path


def preference_set(n: int) -> pd.DataFrame:
    """Shortest-path prompts with two wrong answers each, ~80 tokens, like the demo's samples."""
    rng = random.Random(0)
    questions = nlgraph_shortest_path.generate_questions(n, seed=0)

    def answer(q) -> str:
        steps = ", ".join(f"node {rng.randrange(10)} to node {rng.randrange(10)} weighs {rng.randrange(1, 5)}"
                          for _ in range(6))
        return f"Let us follow the edges: {steps}. The total weight is {rng.randrange(2, 20)}."
    return pd.DataFrame({"prompt": [q.text for q in questions], "chosen": [answer(q) for q in questions],
                         "rejected": [answer(q) for q in questions]})


def run_one(precompute: bool, pairs: int, epochs: int, batch_size: int) -> dict:
    from wow_core.train import train_adapter
    config = TrainConfig(epochs=epochs, batch_size=batch_size, eval_fraction=0.0, max_length=512,
                         precompute_ref_log_probs=precompute)
    table = preference_set(pairs)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        summary = train_adapter(resolve_model_path("smollm2-135m"), table, config, out)
        wall = time.perf_counter() - started
    return {"precompute": precompute, "wall_s": wall, "pairs_per_s": len(table) * epochs / wall,
            "train_loss": summary["train_loss"],
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--child", choices=["precompute", "recompute"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child == "precompute", args.pairs, args.epochs, args.batch_size)))
        return

    resolve_model_path("smollm2-135m")  # convert the packaged model before timing anything
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{args.pairs} pairs x {args.epochs} epochs, batch {args.batch_size}, "
          "LoRA r16 on all projections, DPO sigmoid")
    threads = str(max(1, torch.get_num_threads() // 2))
    print(f"both variants at once, {threads} torch thread(s) each")
    children = {variant: subprocess.Popen(
        [sys.executable, __file__, "--child", variant, "--pairs", str(args.pairs), "--epochs", str(args.epochs),
         "--batch-size", str(args.batch_size)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        for variant in ("recompute", "precompute")}
    results = {}
    for variant, child in children.items():
        out, _ = child.communicate()
        if child.returncode:
            raise SystemExit(f"{variant} run failed (exit {child.returncode})")
        results[variant] = r = json.loads(out.strip().splitlines()[-1])
        print(f"reference log-probs {variant:>10}: {r['wall_s']:7.1f} s, {r['pairs_per_s']:.3f} pairs/s, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB, train loss {r['train_loss']:.4f}")
    pre, re_ = results["precompute"], results["recompute"]
    print(f"speed-up of precomputing: {pre['pairs_per_s'] / re_['pairs_per_s']:.2f}x; "
          f"peak memory ratio: {pre['peak_rss_gb'] / re_['peak_rss_gb']:.2f}")


if __name__ == "__main__":
    main()
