"""Sampling throughput: wow's transformers backend vs the paper's own loop, same prompts and model.

The paper's loop (as released with Yao et al.): `model.generate` on batches of 5 copies of one prompt,
then a log-softmax over the full vocabulary of every output logit to read each token's log-prob. wow
pre-fills each prompt once and shares its KV cache across the prompt's samples, batches up to
`batch_size` sequences of similar length, and reads log-probs step by step from the generation's own
logits. Both sides return per-token log-probs. Prints generated tokens/s of each and their ratio.

    .venv/bin/python benchmarks/sampling.py [--questions 8] [--n 10] [--max-new-tokens 128]
"""
import argparse
import platform
import time

import torch

from wow_core.backends import get_backend
from wow_core.config import ModelConfig
from wow_core.datasets import nlgraph_shortest_path


def paper_loop(backend, conversations, n: int, max_new_tokens: int) -> int:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--n", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=40)
    args = parser.parse_args()

    backend = get_backend(ModelConfig(name="smollm2-135m", batch_size=args.batch_size))
    questions = nlgraph_shortest_path.generate_questions(args.questions, seed=0)
    conversations = [[{"role": "user", "content": q.text}] for q in questions]
    prompt_tokens = sum(len(backend._encode(c)) for c in conversations) / len(conversations)
    backend.sample(conversations[:1], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)  # warm-up

    torch.manual_seed(0)
    start = time.perf_counter()
    paper_tokens = paper_loop(backend, conversations, args.n, args.max_new_tokens)
    paper_s = time.perf_counter() - start

    start = time.perf_counter()
    gens = backend.sample(conversations, n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    wow_s = time.perf_counter() - start
    wow_tokens = sum(g.n_tokens for per_q in gens for g in per_q)

    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"{args.questions} NLGraph questions (mean prompt {prompt_tokens:.0f} tokens) x n={args.n}, "
          f"max_new_tokens={args.max_new_tokens}, temperature 1.0, log-probs on both sides")
    print(f"paper loop (batches of 5):          {paper_tokens:6d} tokens in {paper_s:7.1f} s = {paper_tokens / paper_s:6.1f} tok/s")
    print(f"wow backend (batch {args.batch_size}, shared prefill): {wow_tokens:6d} tokens in {wow_s:7.1f} s = {wow_tokens / wow_s:6.1f} tok/s")
    print(f"speed-up: {(wow_tokens / wow_s) / (paper_tokens / paper_s):.2f}x")


if __name__ == "__main__":
    main()
