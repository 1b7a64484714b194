"""bfloat16 against float32 on this CPU: the measurement behind `dtype: auto` (wow_core/machine.py).

Times, in one run, the same work in both precisions: a linear layer of SmolLM2-135M's MLP shape
(128 tokens x 576 -> 1536), and the packaged model's forward pass over a batch of prompts (prefill) and
one decoding step (batch 32, 256 cached tokens). Prints milliseconds and the bfloat16 / float32 ratio:
above 1 where the CPU emulates bfloat16 (AVX2), below where it computes it (AVX-512 BF16, AMX).

    .venv/bin/python benchmarks/precision.py [--repeats 20]
"""
import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, DynamicCache

from wow_core.backends.transformers_backend import resolve_model_path
from wow_core.machine import choose_dtype, detect


def best_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    machine = detect()
    folder = resolve_model_path("smollm2-135m")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        x, w = torch.randn(128, 576, dtype=dtype), torch.randn(1536, 576, dtype=dtype)
        linear = best_ms(lambda: torch.nn.functional.linear(x, w), args.repeats)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        prompts = torch.randint(100, 40000, (8, 224))
        prefill = best_ms(lambda: model(input_ids=prompts), max(3, args.repeats // 5))
        cache = DynamicCache()
        model(input_ids=torch.randint(100, 40000, (32, 256)), cache=cache, use_cache=True)
        step = torch.randint(100, 40000, (32, 1))

        def decode():
            model(input_ids=step, cache=cache, use_cache=True)
            cache.crop(-1)  # back to the 256 cached tokens
        decoding = best_ms(decode, args.repeats)
        rows.append((str(dtype).removeprefix("torch."), linear, prefill, decoding))
    print(f"machine: {machine.cpu_name} ({machine.cpu_capability()}), {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; dtype auto here: {choose_dtype('cpu', machine).dtype}\n")
    print("| dtype | linear 128x576 @ 576x1536 (ms) | prefill 8 x 224 tokens (ms) | decode step, batch 32 (ms) |")
    print("|---|---|---|---|")
    for name, *ms in rows:
        print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in ms) + " |")
    print("| bfloat16 / float32 | " + " | ".join(f"{b / f:.2f}x" for f, b in zip(rows[0][1:], rows[1][1:])) + " |")


if __name__ == "__main__":
    main()
