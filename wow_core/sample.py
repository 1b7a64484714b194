"""Sampling stage: n answers per question, the final answer extracted, its proxy and correctness.

Extraction follows the paper: a second turn asks the generator to conclude in the dataset's fixed
form ("The total weight is N"), its reply started with the form's first words so that small models
keep to it, parsed by regex; if that fails, the answer itself is parsed. Each
row records which way its answer was extracted, and None when neither worked (never a guess).
"""
import hashlib
import json
from types import ModuleType

import pandas as pd

from wow_core.backends import Backend
from wow_core.config import SamplingConfig
from wow_core.records import Question

VERSION = 2  # 2: the extraction turn's reply is prefilled

SAMPLE_COLUMNS = ["dataset", "question_id", "question", "gold", "sample_idx", "answer", "n_tokens",
                  "finish_reason", "mean_logprob", "extraction_output", "extracted", "extraction_method",
                  "proxy", "correct"]


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


def extract_answer(dataset: ModuleType, conclusion: str, answer: str) -> tuple[str | None, str | None]:
    """(extracted answer, how it was found: 'conclusion' | 'direct' | None)."""
    value = dataset.parse_conclusion(conclusion)
    if value is not None:
        return value, "conclusion"
    value = dataset.parse_direct(answer)
    if value is not None:
        return value, "direct"
    return None, None


def sample_answers(questions: list[Question], dataset: ModuleType, backend: Backend,
                   config: SamplingConfig) -> pd.DataFrame:
    """Sample `config.n` answers per question and label each; one row per sample (`SAMPLE_COLUMNS`)."""
    if not questions:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    conversations = [[{"role": "user", "content": q.text}] for q in questions]
    answers = backend.sample(conversations, n=config.n, temperature=config.temperature, top_p=config.top_p,
                             max_new_tokens=config.max_new_tokens, seed=shard_seed(config.seed, questions))
    follow_ups = [conv + [{"role": "assistant", "content": a.text}, {"role": "user", "content": dataset.EXTRACTION_PROMPT},
                          {"role": "assistant", "content": dataset.EXTRACTION_PREFILL}]
                  for conv, gens in zip(conversations, answers) for a in gens]
    conclusions = iter(dataset.EXTRACTION_PREFILL + g.text
                       for g in backend.generate(follow_ups, max_new_tokens=config.extraction_max_new_tokens))
    rows = []
    for q, gens in zip(questions, answers):
        for idx, a in enumerate(gens):
            conclusion = next(conclusions)
            value, how = extract_answer(dataset, conclusion, a.text)
            proxy = dataset.proxy(q, value) if value is not None else None
            rows.append({
                "dataset": q.dataset, "question_id": q.id, "question": q.text, "gold": q.gold,
                "sample_idx": idx, "answer": a.text, "n_tokens": a.n_tokens, "finish_reason": a.finish_reason,
                "mean_logprob": a.mean_logprob, "extraction_output": conclusion, "extracted": value,
                "extraction_method": how, "proxy": proxy,
                "correct": dataset.is_correct(q, value) if value is not None else None,
            })
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
