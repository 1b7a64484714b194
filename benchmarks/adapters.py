"""Serving LoRA adapters on the vLLM engine: merged (an engine of its own per adapter) vs at run time (one
LoRA-enabled engine), on the alignment flow's held-out evaluation of each adapter: sampling with
log-probs, then the extraction turn. Prints wall time per mode, engine start-ups included.

    .venv/bin/python benchmarks/adapters.py [--adapters 3] [--questions 5] [--n 5] [--max-new-tokens 64] [--dtype bfloat16]
"""  # noqa: E501 (the usage line, as --help prints it)
import argparse
import tempfile
import time

import torch

from wow_core import engines
from wow_core.backends.transformers_backend import resolve_model_path
from wow_core.backends.vllm_backend import VLLMBackend
from wow_core.config import SamplingConfig, VllmModel
from wow_core.datasets import nlgraph_shortest_path as dataset
from wow_core.sample import sample_answers


def random_adapter(folder: str, seed: int) -> str:
    """A rank-16 LoRA adapter on every projection with small random weights (a trained one's shape)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("smollm2-135m"))
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=16, init_lora_weights=False, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.1)
    model.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", type=int, default=3)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--modes", nargs="+", default=["merged", "runtime"], choices=["merged", "runtime"])
    args = parser.parse_args()
    questions = dataset.generate_questions(args.questions, 0, "easy")
    sampling = SamplingConfig(n=args.n, max_new_tokens=args.max_new_tokens, extraction_max_new_tokens=40, seed=1)
    with tempfile.TemporaryDirectory(prefix="wow-bench-adapters-") as work:
        adapters = [random_adapter(f"{work}/a{i}", i) for i in range(args.adapters)]
        print(f"{args.adapters} adapters, each evaluated on {args.questions} NLGraph questions x n={args.n} "
              f"({args.max_new_tokens} new tokens) + the extraction turn; {args.dtype}; start-ups included\n")
        print("| adapters served | seconds | per adapter |")
        print("|---|---|---|", flush=True)
        for mode in args.modes:
            started = time.perf_counter()
            for adapter in adapters:
                backend = VLLMBackend(VllmModel(name="aligned", backend="vllm", dtype=args.dtype, adapter=adapter,
                                                adapters=mode))
                sample_answers(questions, dataset, backend, sampling)
                backend.close()
            engines.stop_all()
            seconds = time.perf_counter() - started
            print(f"| {mode} | {seconds:.0f} | {seconds / args.adapters:.0f} |", flush=True)


if __name__ == "__main__":
    main()
