"""The vLLM CPU engine's throughput by compute threads, idle and beside a competing process.

On a small CPU the engine shares the cores with everything else a run does: the flow's own process,
the Prefect server, Stockfish scoring chess answers, a training in wow's process. OpenMP threads that
spin-wait at every barrier make an engine on every core stall whenever one of those wakes up. This
measures, for each thread count, the demo's own two kinds of engine work:

- sampling: NLGraph shortest-path questions, n answers each at temperature 1, per-token log-probs;
- judging: pairwise judge prompts over pairs of those answers (long prompts, short verdicts),

first on an idle machine, then while another process keeps one core busy (`--load busy`: a Python
loop; `--load stockfish`: Stockfish analysing, one thread). Each setting starts its own engine
(start-up not timed). Prints one table; record it in docs/benchmarks.md with the machine.

    .venv/bin/python benchmarks/engine_threads.py [--threads 2 1 2p] [--loads idle busy stockfish]
"""
import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time

from wow_core import judge
from wow_core.backends.vllm_backend import VLLMBackend
from wow_core.config import VllmModel
from wow_core.datasets import nlgraph_shortest_path as dataset
from wow_core.datasets.chess_puzzles import stockfish_path
from wow_core.engines import get_engine, stop_engine
from wow_core.machine import detect, resolve_dtype

BUSY_LOOP = "import time\nwhile True:\n    sum(range(10000))\n"


@contextlib.contextmanager
def competing(load: str):
    """A process that keeps one core busy for the duration (none for 'idle')."""
    if load == "idle":
        yield
        return
    if load == "busy":
        process = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    else:
        process = subprocess.Popen([stockfish_path()], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        process.stdin.write("setoption name Threads value 1\nposition startpos\ngo infinite\n")
        process.stdin.flush()
    try:
        time.sleep(1)
        yield
    finally:
        process.kill()
        process.wait()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", default=[str(os.cpu_count()), "1"],
                        help="engine compute threads to compare; '2p': 2 with OMP_WAIT_POLICY=PASSIVE")
    parser.add_argument("--loads", nargs="+", default=["idle", "busy"], choices=["idle", "busy", "stockfish"])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--judge-prompts", type=int, default=48)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    machine = detect()
    sampling = dict(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    rows = []
    for setting in args.threads:
        threads, passive = int(setting.rstrip("p")), setting.endswith("p")
        if passive:  # OpenMP threads sleep at once instead of spinning at every barrier
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        backend = VLLMBackend(VllmModel(name=f"vllm-{threads}t", backend="vllm", dtype=args.dtype,
                                        cpu_threads=threads))
        get_engine(backend.spec)
        os.environ.pop("OMP_WAIT_POLICY", None)
        warm = [[{"role": "user", "content": dataset.generate_questions(1, 99, "easy")[0].text}]]
        backend.sample(warm, n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=1)
        for k, load in enumerate(args.loads):
            # Other questions under each load, the same ones for every setting: nothing is a prefix-cache hit
            # of an earlier measurement.
            questions = dataset.generate_questions(args.questions, k + 1, "easy")
            conversations = [[{"role": "user", "content": q.text}] for q in questions]
            with competing(load):
                answers, sample_s = timed(lambda: backend.sample(conversations, **sampling))
                prompts = [[{"role": "user", "content": judge.pairwise_prompt(q.text, g[i].text, g[i + 1].text,
                                                                              reasoning=False)}]
                           for q, g in zip(questions, answers) for i in range(0, len(g) - 1, 2)][:args.judge_prompts]
                verdicts, judge_s = timed(lambda: backend.generate(prompts, max_new_tokens=40))
            sampled = sum(g.n_tokens for gens in answers for g in gens)
            prefilled = sum(v.prompt_tokens or 0 for v in verdicts)
            rows.append((setting, load, sampled, sample_s, len(prompts), prefilled, judge_s))
            print(f"threads {setting}, {load}: sampling {sampled / sample_s:.1f} tok/s ({sample_s:.1f} s), "
                  f"judging {len(prompts) / judge_s:.2f} prompts/s ({judge_s:.1f} s)", flush=True)
        stop_engine(backend.spec)

    print(f"\nmachine: {platform.machine()} {machine.cpu_name} ({machine.cpu_capability()}), {machine.cores} cores; "
          f"dtype {resolve_dtype(args.dtype, 'cpu')}; {args.questions} questions x n={args.n} x "
          f"{args.max_new_tokens} tokens; {args.judge_prompts} pairwise judge prompts (verdict at once, 40 tokens)\n")
    idle = {t: (s, j) for t, load, _, s, _, _, j in rows if load == "idle"}
    print("(engine threads 'Np': N threads with OMP_WAIT_POLICY=PASSIVE)\n")
    print("| engine threads | competing load | sampling tok/s | judging prompts/s "
          "| sampling vs idle | judging vs idle |")
    print("|---|---|---|---|---|---|")
    for threads, load, sampled, sample_s, n_prompts, _, judge_s in rows:
        base = idle.get(threads)
        vs = (f"{base[0] / sample_s:.2f}x", f"{base[1] / judge_s:.2f}x") if base else ("", "")
        print(f"| {threads} | {load} | {sampled / sample_s:.1f} | {n_prompts / judge_s:.2f} | {vs[0]} | {vs[1]} |")


if __name__ == "__main__":
    main()
