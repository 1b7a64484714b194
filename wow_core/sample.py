"""Sampling stage: n answers per question, the final answer extracted, its proxy and correctness.

Extraction follows the paper: a second turn asks the generator to conclude in the dataset's fixed
form ("The total weight is N"), its reply started with the form's first words so that small models
keep to it, parsed by regex; if that fails, the answer itself is parsed. Each
row records which way its answer was extracted, and None when neither worked (never a guess).

A dataset may ask each sample its own prompt, as multiple choice does when every sample sees its own
option order (Yao et al. shuffle the options per sample). Such a dataset defines
`sample_prompts(question, n, seed) -> [(user turn, view), ...]`, a JSON-serialisable view saying how the
sample's prompt differs from `question.text`, and `canonical_answer(question, view, raw) -> str | None`,
which maps what was parsed in the sample's own terms (its letters) to the canonical answer that `gold`,
`proxy` and `is_correct` use ({} is the view of `question.text` itself); None when the parse names no
option. Each such prompt is sampled once.

A dataset whose answer is the whole reply (a biography) sets `EXTRACTION_PROMPT = None`: no second
turn is asked, `parse_direct` of the answer is the value (extraction_method 'direct', no
extraction_output). A dataset whose proxy needs a model defines `score_answers(questions, values,
judge) -> [(proxy, correct, detail), ...]` in place of `proxy` and `is_correct`; it is called once per
shard with the answers that have a value, and `sample_answers` must then be given the judge's backend.
`detail` is what the judge's proxy rests on (a biography's facts and their verdicts), kept as JSON in
the row's `proxy_detail` so that a score can be audited; rule-based proxies leave it None.
"""
import hashlib
import itertools
import json
from types import ModuleType

import pandas as pd

from wow_core import progress
from wow_core.backends import Backend
from wow_core.config import SamplingConfig
from wow_core.records import Question

# 2: the extraction turn's reply is prefilled; 3: per-sample prompts, `view` column; 4: `proxy_detail`
VERSION = 4

# prompt: the user turn this sample was asked; view: how it differs from `question`, as JSON ("{}": it
# was asked `question` itself).
SAMPLE_COLUMNS = ["dataset", "question_id", "question", "gold", "sample_idx", "prompt", "view", "answer", "n_tokens",
                  "finish_reason", "mean_logprob", "extraction_output", "extracted", "extraction_method",
                  "proxy", "correct", "proxy_detail"]


def questions_to_table(questions: list[Question]) -> pd.DataFrame:
    return pd.DataFrame({
        "question_id": [q.id for q in questions],
        "dataset": [q.dataset for q in questions],
        "text": [q.text for q in questions],
        "gold": [q.gold for q in questions],
        "meta": [json.dumps(q.meta, sort_keys=True) for q in questions],
    })


def table_to_questions(table: pd.DataFrame) -> list[Question]:
    return [Question(id=r.question_id, dataset=r.dataset, text=r.text, gold=r.gold, meta=json.loads(r.meta))
            for r in table.itertuples()]


def shard_seed(seed: int, questions: list[Question]) -> int:
    """A seed that depends on the config seed and on which questions the shard holds."""
    blob = json.dumps([seed, [q.id for q in questions]]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big")


def extract_answer(dataset: ModuleType, conclusion: str | None, answer: str, question: Question | None = None,
                   view: dict | None = None) -> tuple[str | None, str | None]:
    """(extracted answer, how it was found: 'conclusion' | 'direct' | None). With a `view` (a dataset
    with `sample_prompts`), each parse is mapped to the canonical answer; one that names no option
    counts as not found. A None `conclusion` (no extraction turn was asked) is not parsed."""
    concluded = dataset.parse_conclusion(conclusion) if conclusion is not None else None
    for how, value in (("conclusion", concluded), ("direct", dataset.parse_direct(answer))):
        if value is not None and view is not None:
            value = dataset.canonical_answer(question, view, value)
        if value is not None:
            return value, how
    return None, None


def label_answers(dataset: ModuleType, questions: list[Question], values: list[str],
                  judge: Backend | None = None) -> list[tuple[float, bool, dict | None]]:
    """(proxy, correct, detail) of each extracted value: the dataset's `score_answers` with the judge
    when it has one, else its `proxy` and `is_correct` (detail None)."""
    if hasattr(dataset, "score_answers"):
        return dataset.score_answers(questions, values, judge)
    return [(dataset.proxy(q, v), dataset.is_correct(q, v), None) for q, v in zip(questions, values)]


def sample_answers(questions: list[Question], dataset: ModuleType, backend: Backend,
                   config: SamplingConfig, judge: Backend | None = None) -> pd.DataFrame:
    """Sample `config.n` answers per question and label each; one row per sample (`SAMPLE_COLUMNS`).
    A dataset with `sample_prompts` has each sample asked its own prompt, one with `score_answers` is
    labelled by `judge` (see the module docstring).

    Raises:
        ValueError: the dataset scores with a judge model and `judge` is None.
    """
    if hasattr(dataset, "score_answers") and judge is None:
        raise ValueError(f"dataset '{dataset.NAME}' scores its answers with a judge model and none was given "
                         "(`judge`; in a config, the dataset's `options.judge`, by default the generator)")
    if not questions:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    sampling = dict(temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_new_tokens,
                    seed=shard_seed(config.seed, questions))
    if hasattr(dataset, "sample_prompts"):
        # Seeded per question, so that a question's prompts do not depend on the shard that holds it.
        asked = [dataset.sample_prompts(q, config.n, shard_seed(config.seed, [q])) for q in questions]
        with progress.phase("answers", sum(len(p) for p in asked)):
            generations = iter(gens[0] for gens in backend.sample(
                [[{"role": "user", "content": text}] for prompts in asked for text, _ in prompts], n=1, **sampling))
        answers = [[next(generations) for _ in prompts] for prompts in asked]
    else:
        asked = [[(q.text, None)] * config.n for q in questions]
        with progress.phase("answers", len(questions) * config.n):
            answers = backend.sample([[{"role": "user", "content": q.text}] for q in questions], n=config.n,
                                     **sampling)
    if dataset.EXTRACTION_PROMPT is None:  # the answer is its own value: no second turn
        conclusions = itertools.repeat(None)
    else:
        follow_ups = [[{"role": "user", "content": text}, {"role": "assistant", "content": a.text},
                       {"role": "user", "content": dataset.EXTRACTION_PROMPT},
                       {"role": "assistant", "content": dataset.EXTRACTION_PREFILL}]
                      for prompts, gens in zip(asked, answers) for (text, _), a in zip(prompts, gens)]
        with progress.phase("extraction turns", len(follow_ups)):
            conclusions = iter([dataset.EXTRACTION_PREFILL + g.text for g in backend.generate(
                follow_ups, max_new_tokens=config.extraction_max_new_tokens)])
    rows, asked_of = [], []
    for q, prompts, gens in zip(questions, asked, answers):
        for idx, ((text, view), a) in enumerate(zip(prompts, gens)):
            conclusion = next(conclusions)
            asked_of.append(q)
            value, how = extract_answer(dataset, conclusion, a.text, q, view)
            rows.append({
                "dataset": q.dataset, "question_id": q.id, "question": q.text, "gold": q.gold,
                "sample_idx": idx, "prompt": text, "view": json.dumps(view or {}, sort_keys=True), "answer": a.text,
                "n_tokens": a.n_tokens, "finish_reason": a.finish_reason,
                "mean_logprob": a.mean_logprob, "extraction_output": conclusion, "extracted": value,
                "extraction_method": how, "proxy": None, "correct": None, "proxy_detail": None,
            })
    valued = [(q, row) for q, row in zip(asked_of, rows) if row["extracted"] is not None]
    labels = label_answers(dataset, [q for q, _ in valued], [row["extracted"] for _, row in valued], judge)
    for (_, row), (proxy, correct, detail) in zip(valued, labels, strict=True):
        row["proxy"], row["correct"] = proxy, correct
        row["proxy_detail"] = None if detail is None else json.dumps(detail, ensure_ascii=False)
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
