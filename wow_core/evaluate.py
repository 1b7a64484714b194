"""Base vs aligned on held-out questions (DESIGN.md, "Alignment metrics"; paper §3.2).

Over all sampled answers of the held-out questions: proxy score (mean proxy, unextractable = 0),
wrong-only proxy (mean proxy of the extracted wrong answers: "less wrong"), accuracy ("more
correct") and ECE (10 bins, confidence = exp(mean token log-prob); an empty answer has no
confidence and is left out of ECE only). Deltas get paired bootstrap intervals: questions are
resampled with replacement and both models are scored on the same resample.

Selection among a preference set's grid points: by default the paper's (Yao et al. 2024, reference
code: DPO loss on the set's own 10 % of held-out pairs), the lowest eval loss, reported on every
held-out question; or (`selection: proxy`) the best proxy score on one half of the held-out
questions, reported on the other half. One grid point has nothing to select.
"""
import numpy as np
import pandas as pd

from wow_core.metrics import MIN_QUESTIONS, expected_calibration_error
from wow_core.pairs import split_questions

VERSION = 1

METRICS = ("proxy_score", "wrong_only_proxy", "accuracy", "ece")
HIGHER_IS_BETTER = {"proxy_score": True, "wrong_only_proxy": True, "accuracy": True, "ece": False}
TABLE_COLUMNS = ["dataset", "trained_on", "preference_set", "transfer", "grid_point", "selected_by", "n_pairs",
                 "n_questions", "metric", "base", "aligned", "delta", "low", "high"]


def _arrays(samples: pd.DataFrame) -> dict[str, np.ndarray]:
    proxy = samples["proxy"].astype(float).to_numpy()
    correct = samples["correct"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return {"proxy": proxy, "correct": correct,
            "confidence": np.exp(samples["mean_logprob"].astype(float).to_numpy())}


def _metrics(a: dict[str, np.ndarray]) -> dict[str, float]:
    proxy, correct, confidence = a["proxy"], a["correct"], a["confidence"]
    wrong = ~correct & ~np.isnan(proxy)
    scored = ~np.isnan(confidence)
    return {
        "proxy_score": float(np.nan_to_num(proxy, nan=0.0).mean()) if len(proxy) else float("nan"),
        "wrong_only_proxy": float(proxy[wrong].mean()) if wrong.any() else float("nan"),
        "accuracy": float(correct.mean()) if len(correct) else float("nan"),
        "ece": expected_calibration_error(confidence[scored], correct[scored]) if scored.any() else float("nan"),
    }


def alignment_metrics(samples: pd.DataFrame) -> dict[str, float]:
    """The four alignment metrics of one model's answers (NaN where a metric has no answers)."""
    return _metrics(_arrays(samples))


def _per_question(samples: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    return {q: _arrays(g) for q, g in samples.groupby("question_id")}


def _on_questions(per_q: dict, questions: list[str], picks: np.ndarray) -> dict[str, float]:
    """The metrics of the answers to `questions[picks]` (a question picked twice counts twice)."""
    parts = [per_q[questions[i]] for i in picks]
    return _metrics({k: np.concatenate([p[k] for p in parts]) for k in ("proxy", "correct", "confidence")})


def _percentiles(draws: list[float], confidence: float) -> tuple[float, float]:
    d = np.asarray(draws, dtype=float)
    d = d[~np.isnan(d)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(d, [tail, 100 - tail]) if len(d) else (np.nan, np.nan)
    return float(low), float(high)


def bootstrap_deltas(base: pd.DataFrame, aligned: pd.DataFrame, n_resamples: int, seed: int,
                     confidence: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """metric -> (aligned - base, low, high): paired percentile bootstrap over the shared questions;
    low and high are NaN on fewer than MIN_QUESTIONS questions (a resample of 1-4 questions has too
    few distinct values to say anything about the next question)."""
    questions = sorted(set(base["question_id"]) & set(aligned["question_id"]))
    if not questions:
        raise ValueError("base and aligned answers share no question")
    by_q = [_per_question(t) for t in (base, aligned)]
    everything = np.arange(len(questions))
    point_base, point_aligned = (_on_questions(per_q, questions, everything) for per_q in by_q)
    if len(questions) < MIN_QUESTIONS:
        return {m: (point_aligned[m] - point_base[m], float("nan"), float("nan")) for m in METRICS}
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(n_resamples):
        picks = rng.integers(0, len(questions), len(questions))
        b, a = (_on_questions(per_q, questions, picks) for per_q in by_q)
        for m in METRICS:
            draws[m].append(a[m] - b[m])
    return {m: (point_aligned[m] - point_base[m], *_percentiles(draws[m], confidence)) for m in METRICS}


def bootstrap_levels(samples: pd.DataFrame, n_resamples: int, seed: int,
                     confidence: float = 0.95) -> dict[str, tuple[float, float, float]]:
    """metric -> (value, low, high): percentile bootstrap over the questions of one model's answers; low
    and high are NaN on fewer than MIN_QUESTIONS questions."""
    questions = sorted(set(samples["question_id"]))
    if not questions:
        raise ValueError("no answers to score")
    per_q = _per_question(samples)
    point = _on_questions(per_q, questions, np.arange(len(questions)))
    if len(questions) < MIN_QUESTIONS:
        return {m: (point[m], float("nan"), float("nan")) for m in METRICS}
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(n_resamples):
        values = _on_questions(per_q, questions, rng.integers(0, len(questions), len(questions)))
        for m in METRICS:
            draws[m].append(values[m])
    return {m: (point[m], *_percentiles(draws[m], confidence)) for m in METRICS}


ROUNDS_COLUMNS = ["model", "dataset", "preference_set", "init", "round", "n_pairs", "n_questions", "metric",
                  "value", "low", "high", "delta", "delta_low", "delta_high"]


def rounds_table(base: pd.DataFrame, rounds: list[dict], seed: int, n_resamples: int,
                 confidence: float = 0.95) -> pd.DataFrame:
    """One iterative-alignment chain on its held-out questions: round 0 (the base model) and each round's
    model, each metric with its bootstrap interval, and its change from the base with the paired one.

    `base`: the base model's held-out answers. `rounds`: {round, n_pairs, samples (held-out answers)}, in
    order. Returns ROUNDS_COLUMNS less model, dataset, preference_set and init (the caller's)."""
    rows = []
    for r in [{"round": 0, "n_pairs": 0, "samples": base}, *rounds]:
        levels = bootstrap_levels(r["samples"], n_resamples, seed, confidence)
        deltas = bootstrap_deltas(base, r["samples"], n_resamples, seed, confidence) if r["round"] else \
            {m: (0.0, float("nan"), float("nan")) for m in METRICS}
        for m in METRICS:
            rows.append({"round": r["round"], "n_pairs": r["n_pairs"],
                         "n_questions": r["samples"]["question_id"].nunique(),
                         "metric": m, "value": levels[m][0], "low": levels[m][1], "high": levels[m][2],
                         "delta": deltas[m][0], "delta_low": deltas[m][1], "delta_high": deltas[m][2]})
    return pd.DataFrame(rows, columns=ROUNDS_COLUMNS[4:])


def selection_halves(heldout_ids: list[str], seed: int) -> tuple[list[str], list[str]]:
    """(select, report): the held-out questions split in two fixed halves."""
    return split_questions(heldout_ids, 0.5, seed)


def by_eval_loss(run: dict) -> tuple[bool, float]:
    """Sort key of the paper's selection: the lowest eval loss first, a run without one last."""
    loss = run["summary"].get("eval_loss")
    missing = loss is None or np.isnan(loss)
    return missing, 0.0 if missing else float(loss)


def alignment_table(base: dict[str, pd.DataFrame], runs: list[dict], seed: int, n_resamples: int,
                    confidence: float = 0.95, selection: str = "eval_loss") -> pd.DataFrame:
    """Base vs the selected grid point of every preference set, on every dataset it was evaluated on.

    `base`: dataset -> base model's held-out answers. `runs`: one per trained grid point, with keys
    preference_set, trained_on (dataset), grid_point, n_pairs, summary (its `eval_loss`) and samples
    (dataset -> answers). `selection`: 'eval_loss' (the paper's: the grid point with the lowest DPO loss
    on the set's own held-out pairs; no question is spent on it) or 'proxy' (the best proxy score on one
    half of the held-out questions, reported on the other half).
    """
    if selection not in ("eval_loss", "proxy"):
        raise ValueError(f"`selection` must be 'eval_loss' or 'proxy', got {selection!r}")
    rows = []
    halves = {ds: selection_halves(sorted(set(t["question_id"])), seed) for ds, t in base.items()}
    for (trained_on, set_tag), group in _group(runs):
        by_proxy = selection == "proxy" and len(group) > 1
        if by_proxy:
            select_ids = halves[trained_on][0]
            if not select_ids:
                raise ValueError(f"{trained_on}: selecting among {len(group)} grid points needs at least 2 held-out "
                                 "questions (one half selects, the other reports)")
            best = max(group, key=lambda r: _on(r["samples"][trained_on], select_ids)["proxy_score"])
        else:
            best = min(group, key=by_eval_loss)
        for ds, aligned in best["samples"].items():
            ids = halves[ds][1] if by_proxy else sorted(set(base[ds]["question_id"]))
            b, a = base[ds][base[ds]["question_id"].isin(ids)], aligned[aligned["question_id"].isin(ids)]
            point_b, point_a = alignment_metrics(b), alignment_metrics(a)
            deltas = bootstrap_deltas(b, a, n_resamples, seed, confidence)
            for m in METRICS:
                rows.append({"dataset": ds, "trained_on": trained_on, "preference_set": set_tag,
                             "transfer": ds != trained_on, "grid_point": best["grid_point"],
                             "selected_by": selection if len(group) > 1 else "single", "n_pairs": best["n_pairs"],
                             "n_questions": len(ids), "metric": m, "base": point_b[m], "aligned": point_a[m],
                             "delta": deltas[m][0], "low": deltas[m][1], "high": deltas[m][2]})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _on(samples: pd.DataFrame, ids: list[str]) -> dict[str, float]:
    return alignment_metrics(samples[samples["question_id"].isin(ids)])


def _group(runs: list[dict]) -> list[tuple[tuple[str, str], list[dict]]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["trained_on"], r["preference_set"]), []).append(r)
    return list(groups.items())


def reliability_bins(samples: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Per confidence bin: answers, mean confidence and accuracy (the reliability diagram's data)."""
    a = _arrays(samples)
    scored = ~np.isnan(a["confidence"])
    conf, correct = a["confidence"][scored], a["correct"][scored]
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # same bins as the ECE
    rows = [{"bin": b, "low": b / bins, "high": (b + 1) / bins, "n": int((which == b).sum()),
             "confidence": float(conf[which == b].mean()) if (which == b).any() else np.nan,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else np.nan}
            for b in range(bins)]
    return pd.DataFrame(rows)
