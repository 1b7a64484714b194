"""Engine throughput on the pipeline's own work: the paper's sampling loop, wow's transformers backend and
the vLLM engine (wow_core/engines.py), same model, same prompts, same dtype, in one run.

Three stages, each as the pipeline asks it:
- sampling: n answers per NLGraph question at temperature 1 with per-token log-probs (the paper's loop
  too: `model.generate` on batches of 5 copies of one prompt, then a log-softmax over the whole
  vocabulary of every output logit, as released with Yao et al.);
- extraction: the second turn of every sampled answer, greedy, its reply prefilled;
- judging: pairwise prompts over pairs of sampled answers, greedy, with reasoning.
Extraction and judging run on the same vLLM-sampled answers for both engines. Prints tokens/s (and
seconds) of each and the ratios; the vLLM engine's start-up is timed apart.

    .venv/bin/python benchmarks/sampling.py [--questions 8] [--n 10] [--max-new-tokens 128] [--dtype float32]
"""
import argparse
import platform
import time

import torch

from wow_core import judge
from wow_core.backends.transformers_backend import TransformersBackend
from wow_core.backends.vllm_backend import VLLMBackend
from wow_core.config import TransformersModel, VllmModel
from wow_core.datasets import nlgraph_shortest_path as dataset
from wow_core.engines import get_engine


def paper_loop(backend: TransformersBackend, conversations, n: int, max_new_tokens: int) -> int:
    """Generated tokens of the paper-style loop: batches of 5, full-vocabulary log-softmax afterwards."""
    tok, model = backend.tokenizer, backend.model
    eos = tok.eos_token_id
    generated = 0
    for conv in conversations:
        ids = torch.tensor([backend._encode(conv)])
        for start in range(0, n, 5):
            batch = ids.repeat(min(5, n - start), 1)
            with torch.inference_mode():
                out = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=True,
                                     temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens,
                                     return_dict_in_generate=True, output_logits=True, pad_token_id=eos)
                logprobs = torch.log_softmax(torch.stack(out.logits, dim=1).float(), dim=-1)
                new = out.sequences[:, ids.shape[1]:]
                token_lp = logprobs.gather(2, new.unsqueeze(-1)).squeeze(-1)
            for row, lp in zip(new.tolist(), token_lp.tolist()):
                end = row.index(eos) if eos in row else len(row)
                generated += end
                assert len(lp[:end]) == end
    return generated


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def tokens(generations) -> int:
    return sum(g.n_tokens for g in generations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=40, help="transformers: sequences per generate call")
    parser.add_argument("--judge-prompts", type=int, default=32)
    parser.add_argument("--skip-paper-loop", action="store_true")
    args = parser.parse_args()

    questions = dataset.generate_questions(args.questions, 0, "easy")
    conversations = [[{"role": "user", "content": q.text}] for q in questions]
    hf = TransformersBackend(TransformersModel(name="transformers", dtype=args.dtype, batch_size=args.batch_size))
    vllm = VLLMBackend(VllmModel(name="vllm", backend="vllm", dtype=args.dtype))
    engine, startup_s = timed(lambda: get_engine(vllm.spec))
    sampling = dict(n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    for backend in (hf, vllm):  # warm-up
        backend.sample(conversations[:1], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=1)

    rows = {}
    if not args.skip_paper_loop:
        torch.manual_seed(0)
        paper_tokens, paper_s = timed(lambda: paper_loop(hf, conversations, args.n, args.max_new_tokens))
        rows["sampling", "paper loop"] = (paper_tokens, paper_s)
    for name, backend in (("transformers", hf), ("vllm", vllm)):
        out, seconds = timed(lambda: backend.sample(conversations, **sampling))
        rows["sampling", name] = (tokens(g for gens in out for g in gens), seconds)
        if name == "vllm":
            answers = out

    follow_ups = [[*c, {"role": "assistant", "content": a.text}, {"role": "user", "content": dataset.EXTRACTION_PROMPT},
                   {"role": "assistant", "content": dataset.EXTRACTION_PREFILL}]
                  for c, gens in zip(conversations, answers) for a in gens]
    pairwise = [[{"role": "user", "content": judge.pairwise_prompt(q.text, gens[i].text, gens[i + 1].text)}]
                for q, gens in zip(questions, answers) for i in range(0, len(gens) - 1, 2)][:args.judge_prompts]
    for stage, prompts, budget in (("extraction", follow_ups, 40), ("judge", pairwise, 128)):
        for name, backend in (("transformers", hf), ("vllm", vllm)):
            out, seconds = timed(lambda: backend.generate(prompts, max_new_tokens=budget))
            rows[stage, name] = (tokens(out), seconds)
    engine_log = engine.log_path
    engine.stop()

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"dtype {args.dtype}; vLLM engine ready in {startup_s:.0f} s (log: {engine_log})")
    print(f"{args.questions} NLGraph questions x n={args.n}, up to {args.max_new_tokens} new tokens at temperature 1 "
          f"with log-probs; extraction: {len(follow_ups)} second turns (greedy, 40); judge: {len(pairwise)} "
          "pairwise prompts with reasoning (greedy, 128)\n")
    print("| stage | engine | generated tokens | seconds | tokens/s | vs transformers | vs paper loop |")
    print("|---|---|---|---|---|---|---|")
    for (stage, name), (n_tokens, seconds) in rows.items():
        rate = n_tokens / seconds
        base = rows[stage, "transformers"]
        vs_hf = rate / (base[0] / base[1])
        paper = rows.get(("sampling", "paper loop")) if stage == "sampling" else None
        vs_paper = f"{rate / (paper[0] / paper[1]):.2f}x" if paper else ""
        print(f"| {stage} | {name} | {n_tokens} | {seconds:.1f} | {rate:.1f} | {vs_hf:.2f}x | {vs_paper} |")


if __name__ == "__main__":
    main()
