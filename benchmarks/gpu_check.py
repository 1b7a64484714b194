"""GPU check: wow's backends on CUDA, same prompts, generated tokens/s of each (run by gpu_check.sh).

Always: the transformers backend in bf16 (batched sampling with per-token log-probs), then the same
with a LoRA adapter (randomly initialised, so that it changes the output). Where vLLM is importable:
the vLLM backend, base and with the same adapter as a LoRA request on the same engine.

    python benchmarks/gpu_check.py [--model smollm2-135m] [--prompts 16] [--n 8] [--max-new-tokens 128]
"""
import argparse
import gc
import importlib.util
import tempfile
import time

import torch

from wow_core.backends.transformers_backend import TransformersBackend, resolve_model_path
from wow_core.config import LORA_ALL_PROJECTIONS, TransformersModel, VllmModel
from wow_core.datasets import nlgraph_shortest_path


def random_adapter(path: str, folder: str) -> str:
    """A rank-16 LoRA adapter on every projection, with random (not identity) weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(path))
    lora = LoraConfig(r=16, lora_alpha=16, target_modules=LORA_ALL_PROJECTIONS, init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(folder)
    return folder


def measure(backend, conversations, n: int, max_new_tokens: int) -> dict:
    backend.sample(conversations[:2], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=1)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = backend.sample(conversations, n=n, temperature=1.0, top_p=1.0, max_new_tokens=max_new_tokens, seed=0)
    seconds = time.perf_counter() - start
    gens = [g for gs in out for g in gs]
    assert all(len(g.token_logprobs) == g.n_tokens and all(lp <= 0 for lp in g.token_logprobs) for g in gens)
    tokens = sum(g.n_tokens for g in gens)
    return {"backend": backend.config.name, "sequences": len(gens), "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "mean_logprob": sum(g.mean_logprob or 0 for g in gens) / len(gens),
            "first": gens[0].text[:60].replace("\n", " ")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128, help="transformers: sequences per generate call")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible to torch")
    questions = nlgraph_shortest_path.generate_questions(args.prompts, 0, "easy")
    conversations = [[{"role": "user", "content": q.text}] for q in questions]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; {args.prompts} prompts x "
          f"{args.n} samples, up to {args.max_new_tokens} new tokens, temperature 1.0, log-probs on")
    with tempfile.TemporaryDirectory(prefix="wow-gpu-check-") as folder:
        adapter = random_adapter(args.model, folder)
        configs = [TransformersModel(name="transformers-bf16", path=args.model, device="cuda", dtype="bfloat16",
                                     batch_size=args.batch_size),
                   TransformersModel(name="transformers-bf16+lora", path=args.model, device="cuda", dtype="bfloat16",
                                     batch_size=args.batch_size, adapter=adapter)]
        rows = []
        for config in configs:
            backend = TransformersBackend(config)
            rows.append(measure(backend, conversations, args.n, args.max_new_tokens))
            del backend  # vLLM sizes its KV cache from the GPU memory free when it starts
            gc.collect()
            torch.cuda.empty_cache()
        if importlib.util.find_spec("vllm") is not None:
            from wow_core.backends.vllm_backend import VLLMBackend
            for name, extra in (("vllm-bf16", {}), ("vllm-bf16+lora", {"adapter": adapter})):
                backend = VLLMBackend(VllmModel(name=name, path=args.model, backend="vllm", dtype="bfloat16", **extra))
                rows.append(measure(backend, conversations, args.n, args.max_new_tokens))
        else:
            print("vllm: not importable here; only the transformers backend ran (pip install 'wow[gpu]')")
    print("\n| backend | sequences | generated tokens | seconds | tokens/s | mean log-prob | first answer |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['sequences']} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens_per_s']:.0f} "
              f"| {r['mean_logprob']:.3f} | {r['first']!r} |")


if __name__ == "__main__":
    main()
