"""LLM judges: pairwise comparison (asked in both orders) and scoring of k answers per prompt.

The protocol is the paper's (Yao et al., §2): the evaluator reasons, then ends with a fixed verdict
line. Verdicts are parsed from the last line(s) only, so text the judge quotes from an answer (which
may itself say "Preferred output: 2") never counts. When the reply does not end in a verdict, the
evaluator is asked once more, in a follow-up turn, for the verdict line alone; when that fails too,
the verdict is None, the raw text is kept, and the report counts it. Without reasoning
(`JudgeConfig.reasoning` false) the prompt asks for the verdict alone and the reply is started with its
first words: one short turn. The instruction sentences live here, not in the templates, so they are
part of `VERSION`.
"""
import hashlib
import random
import re
from importlib.resources import files

import pandas as pd

from wow_core import progress
from wow_core.backends import Backend
from wow_core.config import JudgeConfig
from wow_core.elicit import wow_pairs
from wow_core.records import Generation

# What each prompt cost (`_tokens`): on every row of a pairwise table (one prompt per row); on every row
# of a score table, the same for each answer of one prompt (`group`). Tables judged before they were
# recorded lack them (`leaderboard.judge_cost` reads them as unknown); verdicts are the same either way,
# so VERSION stays.
TOKEN_COLUMNS = ["prompt_tokens", "generated_tokens"]

# 2: answers are shown with their extracted conclusion; 3: canonical if asked in their own order; 4: prompts
# without reasoning ask for the verdict alone, scores written "3.0" parse
VERSION = 4

_VERDICT_TAIL = r"[\s*.\"'`]*$"
_LEAD = r"^[\s*#>\"'`-]*"
PAIRWISE_VERDICT = re.compile(_LEAD + r"Preferred output\s*:?\s*\**\s*([12])" + _VERDICT_TAIL, re.IGNORECASE)
# A whole number; "3.0" is one too (small judges write it), "3.5" is not.
_SCORE = r"([0-5])(?:\.0+)?"
SINGLE_SCORE = re.compile(_LEAD + r"Score\s*:\s*\**\s*" + _SCORE + _VERDICT_TAIL, re.IGNORECASE)
NUMBERED_SCORE = re.compile(_LEAD + r"Answer\s*(\d+)\s*:?\s*\**\s*Score\s*:\s*\**\s*" + _SCORE + _VERDICT_TAIL,
                            re.IGNORECASE)


def template(name: str) -> str:
    return files("wow_core").joinpath("templates", f"{name}.txt").read_text()


def templates_version() -> str:
    """Hash of every judge template: part of the judge cache keys, so editing a prompt redoes judging."""
    text = "".join(template(n) for n in ("pairwise", "pairwise_verdict", "score", "score_verdict"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _verdict_lines(text: str, k: int, first: bool) -> list[str]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[:k] if first else lines[-k:]


def parse_pairwise_verdict(text: str, first: bool = False) -> int | None:
    """1 or 2 from the reply's last non-empty line (its first, for a follow-up reply that was asked
    for the verdict alone), else None."""
    tail = _verdict_lines(text, 1, first)
    m = PAIRWISE_VERDICT.match(tail[0]) if tail else None
    return int(m.group(1)) if m else None


def parse_scores(text: str, k: int, first: bool = False) -> list[int | None]:
    """The k whole-number scores (0-5) from the reply's last k non-empty lines (its first k, for a
    follow-up reply); None for each one missing."""
    tail = _verdict_lines(text, k, first)
    if k == 1:
        m = SINGLE_SCORE.match(tail[0]) if tail else None
        return [int(m.group(1)) if m else None]
    scores: list[int | None] = [None] * k
    for line in tail:
        m = NUMBERED_SCORE.match(line)
        if m and 1 <= int(m.group(1)) <= k:
            scores[int(m.group(1)) - 1] = int(m.group(2))
    return scores


# Ends an answer that was asked with its own option order (its letters name other options than the
# question's do), before its extracted answer in canonical form.
OWN_ORDER_NOTE = ("Final answer (this answer was shown the options in its own order; here they are lettered "
                  "as in the question): ")


def shown_answers(samples: pd.DataFrame) -> pd.Series:
    """What the judge sees of each answer: the answer, then the conclusion the proxy graded (when the
    extraction turn gave one), so that a cut-off answer still shows its final number. An answer asked
    with its own view of the question (`view` not "{}") ends instead with `OWN_ORDER_NOTE` and its
    extracted answer, canonical, so that answers that saw different option orders compare unambiguously."""
    concluded = samples["extraction_method"] == "conclusion"
    own_order = (samples["view"] != "{}") & samples["extracted"].notna()
    text = samples["answer"].where(~concluded, samples["answer"] + "\n\n" + samples["extraction_output"].fillna(""))
    text = text.where(~own_order, samples["answer"] + "\n\n" + OWN_ORDER_NOTE + samples["extracted"].fillna(""))
    return pd.Series(text.to_numpy(), index=pd.MultiIndex.from_frame(samples[["question_id", "sample_idx"]]))


def pairwise_prompt(question: str, output_1: str, output_2: str, reasoning: bool = True) -> str:
    """The pairwise question; with `reasoning`, it asks for reasoning first and the verdict on the last line
    (the paper), else for the verdict alone (the reply is then started with the verdict's words)."""
    instruction = ("First explain your reasoning in a few sentences. Then write your verdict on the last line"
                   if reasoning else "Reply with your verdict only")
    return template("pairwise").format(question=question, output_1=output_1, output_2=output_2,
                                       verdict_instruction=instruction)


def _score_lines(k: int) -> str:
    return "Score: <0-5>" if k == 1 else "\n".join(f"Answer {i}: Score: <0-5>" for i in range(1, k + 1))


def score_prompt(question: str, answers: list[str], reasoning: bool = True) -> str:
    """The score question for `answers`; `reasoning` as in `pairwise_prompt`."""
    k = len(answers)
    block = "\n\n".join(f"Answer {i}:\n{a}" for i, a in enumerate(answers, 1))
    return template("score").format(
        question=question, answers=block, k_answers="one answer to it" if k == 1 else f"{k} answers to it",
        k_lines="one line" if k == 1 else f"{k} lines, one per answer in order", score_lines=_score_lines(k),
        verdict_instruction=("First explain your reasoning in a few sentences. Then end your reply with" if reasoning
                             else "Reply with only"))


def _ask(backend: Backend, prompts: list[str], follow_up: str, verdict_start: str, parse, max_new_tokens: int,
         reasoning: bool = True):
    """Ask every prompt; where the reply has no complete verdict, ask once more in a follow-up turn
    whose reply is started with the verdict's first words (`verdict_start`, e.g. "Preferred output:"),
    so that even a small model answers in the form; the verdict is still whatever it writes next.
    Without `reasoning`, the first reply is started with those words: one short turn, no follow-up.
    Returns (reply, follow-up reply or None, parsed verdict, 'reasoning' | 'follow_up' | 'direct', tokens) per
    prompt, `tokens` its `prompt_tokens` and `generated_tokens` over both turns (`_tokens`)."""
    convs = [[{"role": "user", "content": p}] for p in prompts]
    verdict_budget = 8 * len(follow_up.splitlines()) + 8
    if not reasoning:
        with progress.phase("judge prompts", len(convs)):
            direct = backend.generate([c + [{"role": "assistant", "content": verdict_start}] for c in convs],
                                      max_new_tokens=verdict_budget)
        return [(verdict_start + g.text, None, parse(verdict_start + g.text, first=True), "direct", _tokens([g]))
                for g in direct]
    with progress.phase("judge prompts", len(convs)):
        firsts = backend.generate(convs, max_new_tokens=max_new_tokens)
    replies = [g.text for g in firsts]
    parsed = [parse(r) for r in replies]
    missing = [i for i, v in enumerate(parsed) if not _complete(v)]
    seconds: dict[int, Generation] = {}
    if missing:
        again = [convs[i] + [{"role": "assistant", "content": replies[i]}, {"role": "user", "content": follow_up},
                             {"role": "assistant", "content": verdict_start}] for i in missing]
        with progress.phase("verdict follow-ups", len(again)):
            seconds = dict(zip(missing, backend.generate(again, max_new_tokens=verdict_budget)))
    results = []
    for i, reply in enumerate(replies):
        if i not in seconds:
            results.append((reply, None, parsed[i], "reasoning", _tokens([firsts[i]])))
        else:
            second = verdict_start + seconds[i].text
            results.append((reply, second, parse(second, first=True), "follow_up", _tokens([firsts[i], seconds[i]])))
    return results


def _tokens(turns: list[Generation]) -> dict[str, int | None]:
    """What the judge's turns of one prompt cost: `prompt_tokens` (each turn's prompt, a follow-up's
    re-reading the whole conversation) and `generated_tokens` (each reply's, without its end-of-sequence
    token), summed; None where a backend did not say (an endpoint that reports no usage, or replies
    without their tokens because it was asked for no log-probs)."""
    prompt = [g.prompt_tokens for g in turns]
    generated = [g.n_tokens if g.token_logprobs or not g.text else None for g in turns]
    return {"prompt_tokens": None if None in prompt else sum(prompt),
            "generated_tokens": None if None in generated else sum(generated)}


def _complete(verdict) -> bool:
    return all(v is not None for v in verdict) if isinstance(verdict, list) else verdict is not None


def pairwise_judgments(samples: pd.DataFrame, backend: Backend, config: JudgeConfig,
                       pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ask the evaluator about every WoW pair (capped per question), in both orders; or, with `pairs`
    (dataset, question_id, i, j: WoW pairs of `samples`, e.g. a budget's picks), about those, in their order.

    One row per (pair, order): `first`/`second` are the sample indices shown as output 1 and 2,
    `preferred` the sample index the judge chose (None when unparsed), and what the prompt cost
    (`TOKEN_COLUMNS`).
    """
    if pairs is None:  # every WoW pair, or up to the cap per question (a seeded draw)
        pairs = wow_pairs(samples)
        if config.max_pairs_per_question is not None:
            rng = random.Random(config.seed)
            keep = []
            for _, rows in sorted(pairs.groupby("question_id").groups.items()):
                keep += rng.sample(list(rows), min(len(rows), config.max_pairs_per_question))
            pairs = pairs.loc[sorted(keep)]
    answer = shown_answers(samples)
    question = samples.drop_duplicates("question_id").set_index("question_id")["question"]
    asks = [(p.dataset, p.question_id, p.i, p.j, first, second)
            for p in pairs.itertuples() for first, second in ((p.i, p.j), (p.j, p.i))]
    prompts = [pairwise_prompt(question[q], answer[(q, a)], answer[(q, b)], config.reasoning)
               for _, q, _, _, a, b in asks]
    results = _ask(backend, prompts, template("pairwise_verdict"), "Preferred output:", parse_pairwise_verdict,
                   config.max_new_tokens, config.reasoning)
    rows = []
    for (ds, q, i, j, a, b), (reply, second, verdict, source, tokens) in zip(asks, results):
        rows.append({"dataset": ds, "question_id": q, "i": i, "j": j, "first": a, "second": b,
                     "output": reply, "follow_up_output": second,
                     "verdict_source": source if verdict is not None else None,
                     "preferred": None if verdict is None else (a if verdict == 1 else b), **tokens})
    return pd.DataFrame(rows, columns=["dataset", "question_id", "i", "j", "first", "second", "output",
                                       "follow_up_output", "verdict_source", "preferred", *TOKEN_COLUMNS]
                        ).astype({"preferred": "Int64"} | dict.fromkeys(TOKEN_COLUMNS, "Int64"))


def score_judgments(samples: pd.DataFrame, backend: Backend, config: JudgeConfig, k: int) -> pd.DataFrame:
    """Score every wrong answer that takes part in a WoW pair, k answers per prompt (seeded groups).
    With `config.protocol == "paper"`, as the paper's code: every sampled answer of a question, correct
    ones included, k per prompt in sample order, and a prompt whose scores do not all parse gives none.

    One row per answer: its group, its position in the prompt and its score (None when unparsed), and
    what its group's prompt cost (`TOKEN_COLUMNS`, the same on each row of the group).
    """
    paper = config.protocol == "paper"
    if paper:
        needed = sorted(zip(samples.question_id, samples.sample_idx.astype(int)))
    else:
        pairs = wow_pairs(samples)
        needed = sorted(set(zip(pairs.question_id, pairs.i)) | set(zip(pairs.question_id, pairs.j)))
    by_question: dict[str, list[int]] = {}
    for q, idx in needed:
        by_question.setdefault(q, []).append(idx)
    answer = shown_answers(samples)
    question = samples.drop_duplicates("question_id").set_index("question_id")
    rng = random.Random(config.seed)
    groups = []
    for q in sorted(by_question):
        idxs = by_question[q]
        if not paper:
            rng.shuffle(idxs)
        groups += [(q, idxs[s:s + k]) for s in range(0, len(idxs), k)]
    prompts = [score_prompt(question.at[q, "question"], [answer[(q, i)] for i in g], config.reasoning)
               for q, g in groups]
    follow_ups = [template("score_verdict").format(score_lines=_score_lines(len(g))) for _, g in groups]
    rows = []
    # Group sizes differ only in the last group of a question; ask each size with its own follow-up.
    for size in sorted({len(g) for _, g in groups}):
        chosen = [n for n, (_, g) in enumerate(groups) if len(g) == size]
        results = _ask(backend, [prompts[n] for n in chosen], follow_ups[chosen[0]],
                       "Score:" if size == 1 else "Answer 1: Score:",
                       lambda text, size=size, first=False: parse_scores(text, size, first), config.max_new_tokens,
                       config.reasoning)
        for n, (reply, second, scores, source, tokens) in zip(chosen, results):
            q, g = groups[n]
            if paper and any(x is None for x in scores):
                scores = [None] * len(scores)  # the paper's code drops the whole prompt
            for pos, idx in enumerate(g):
                rows.append({"dataset": question.at[q, "dataset"], "question_id": q, "sample_idx": idx,
                             "group": n, "position": pos + 1, "k": k, "output": reply,
                             "follow_up_output": second, "verdict_source": source if scores[pos] is not None else None,
                             "score": scores[pos], **tokens})
    return pd.DataFrame(rows, columns=["dataset", "question_id", "sample_idx", "group", "position", "k", "output",
                                       "follow_up_output", "verdict_source", "score", *TOKEN_COLUMNS]
                        ).astype({"score": "Int64"} | dict.fromkeys(TOKEN_COLUMNS, "Int64"))
