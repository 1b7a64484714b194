"""Budget-aware judging: which wrong-over-wrong pairs a judge-call budget asks about, and what it buys.

A pair is asked in both orders, 2 judge calls; budget B asks the first B // 2 pairs of a pick rule's
ranking of the WoW pairs (a follow-up turn after an unparsed verdict is spent, not budgeted). The rules
never read the proxy or which answer is less wrong (the oracle a budget does not have): only the self
signals that come with sampling.

- random (the baseline): the pairs sorted by (question, i, j), permuted by numpy's generator of `seed`.
- smallest_gap: the smallest |logits score of i - logits score of j| first (the generator is least sure
  which answer is better); a pair without log-probs last; equal gaps in the random order.
- disagreement: first the pairs on which consistency and logits do not prefer the same answer (a tie or
  a missing score of either is not a preference), then the rest; within each, as smallest_gap.

The largest budget is judged once; each smaller one is the start of the same ranking, so every point of a
curve is what a run with that budget alone would have asked. Each point: AccWoW of the unfiltered
pairwise verdicts on the asked pairs, and of the filtered ones (both orders parsed and agree), whose count
is the set size: the pairs a pairwise_filtered preference set would hold. docs/methods.md, "Budget-aware
judging".
"""
import io

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

from wow_core.elicit import consistency_scores, logits_scores, pairwise_pairs, wow_pairs
from wow_core.judge import TOKEN_COLUMNS
from wow_core.leaderboard import judge_cost
from wow_core.metrics import MIN_QUESTIONS, accwow

VERSION = 1

PICKS = ("random", "disagreement", "smallest_gap")
ALL_PAIRS = "all pairs"  # the grid's own pairwise judgment (its pairs capped as configured), where the curve is heading
PAIR_KEY = ["question_id", "i", "j"]
RATES = ("accwow", "filtered")
BUDGET_COLUMNS = (["dataset", "generator", "evaluator", "pick", "budget", "pairs_asked", "wow_pairs", "judge_calls",
                   *TOKEN_COLUMNS]
                  + [f"{r}{part}" for r in RATES for part in ("", "_n", "_questions", "_low", "_high")]
                  + ["set_size"])


def _scores_of(pairs: pd.DataFrame, scores: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's two answers' scores (NaN where an answer has none)."""
    get = lambda q, k: scores.get((q, k), np.nan)  # noqa: E731
    return (np.array([get(q, i) for q, i in zip(pairs.question_id, pairs.i)], dtype=float),
            np.array([get(q, j) for q, j in zip(pairs.question_id, pairs.j)], dtype=float))


def _preference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """+1 where the first answer scores higher, -1 where the second does, 0 on a tie or a missing score."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(a) | np.isnan(b), 0, np.sign(a - b)).astype(int)


def ranked_pairs(samples: pd.DataFrame, pick: str, seed: int) -> pd.DataFrame:
    """The WoW pairs of `samples` (dataset, question_id, i, j) in the order a budget of `pick` asks them."""
    if pick not in PICKS:
        raise ValueError(f"unknown pick {pick!r}; one of {', '.join(PICKS)}")
    pairs = wow_pairs(samples)[["dataset", *PAIR_KEY]].sort_values(PAIR_KEY, kind="stable")
    pairs = pairs.iloc[np.random.default_rng(seed).permutation(len(pairs))].reset_index(drop=True)
    if pick == "random" or pairs.empty:
        return pairs
    logit_i, logit_j = _scores_of(pairs, logits_scores(samples))
    gap = np.abs(logit_i - logit_j)
    order = pd.DataFrame({"missing": np.isnan(gap), "gap": np.nan_to_num(gap, nan=0.0),
                          "draw": np.arange(len(pairs))})
    keys = ["missing", "gap", "draw"]
    if pick == "disagreement":
        logits = _preference(logit_i, logit_j)
        consistency = _preference(*_scores_of(pairs, consistency_scores(samples)))
        order.insert(0, "agree", (logits != 0) & (logits == consistency))
        keys.insert(0, "agree")
    return pairs.loc[order.sort_values(keys, kind="stable").index].reset_index(drop=True)


def pairs_within(ranked: pd.DataFrame, calls: int) -> pd.DataFrame:
    """The pairs `calls` judge calls ask about: the first calls // 2 of the ranking (2 calls a pair)."""
    return ranked.head(max(calls, 0) // 2)


def _point(samples: pd.DataFrame, asked: pd.DataFrame, judgments: pd.DataFrame, confidence: float) -> dict:
    """What judging `asked` bought: calls and tokens spent, AccWoW unfiltered and filtered, set size."""
    asked_keys = pd.MultiIndex.from_frame(asked[PAIR_KEY].drop_duplicates())
    mine = judgments[pd.MultiIndex.from_frame(judgments[PAIR_KEY]).isin(asked_keys)]
    missing = int((~asked_keys.isin(pd.MultiIndex.from_frame(mine[PAIR_KEY]))).sum())
    if missing:
        raise ValueError(f"{missing} of the {len(asked_keys)} asked pairs have no judgment: the judgments are "
                         "not of this ranking")
    pairs = wow_pairs(samples)
    row = {"pairs_asked": len(asked_keys), "wow_pairs": len(pairs), **judge_cost(mine)}
    for name, filtered in zip(RATES, (False, True)):
        rate = accwow(pairwise_pairs(pairs, mine, filtered=filtered), confidence)
        row |= {name: rate.value, f"{name}_n": rate.n, f"{name}_questions": rate.n_questions,
                f"{name}_low": rate.low, f"{name}_high": rate.high}
    return row | {"set_size": row["filtered_n"]}


def budget_rows(samples: pd.DataFrame, judgments: pd.DataFrame, pick: str, seed: int, budgets: list[int],
                confidence: float = 0.95) -> list[dict]:
    """One point per budget (ascending) of one (dataset, generator, evaluator, pick) cell, from the
    judgments of the largest budget's pairs (`pairs_within(ranked_pairs(samples, pick, seed), max(budgets))`)."""
    ranked = ranked_pairs(samples, pick, seed)
    return [{"pick": pick, "budget": b, **_point(samples, pairs_within(ranked, b), judgments, confidence)}
            for b in sorted(budgets)]


def reference_row(samples: pd.DataFrame, judgments: pd.DataFrame, confidence: float = 0.95) -> dict:
    """The point of an unbudgeted judge: every pair its judgments hold; its budget is the calls it spent."""
    asked = judgments[PAIR_KEY].drop_duplicates()
    row = _point(samples, asked, judgments, confidence)
    return {"pick": ALL_PAIRS, "budget": row["judge_calls"], **row}


def budget_table(entries: list[dict], budgets: list[int], confidence: float = 0.95) -> pd.DataFrame:
    """Every cell's points (`BUDGET_COLUMNS`), sorted by dataset, generator, evaluator, pick (PICKS' order,
    the reference last) and budget.

    `entries`: dataset, generator, evaluator, pick (one of PICKS, or ALL_PAIRS for the full judge's
    judgments), seed, samples and judgments (DataFrames)."""
    rows = []
    for e in entries:
        cell = {k: e[k] for k in ("dataset", "generator", "evaluator")}
        points = [reference_row(e["samples"], e["judgments"], confidence)] if e["pick"] == ALL_PAIRS else \
            budget_rows(e["samples"], e["judgments"], e["pick"], e["seed"], budgets, confidence)
        rows += [cell | p for p in points]
    table = pd.DataFrame(rows, columns=BUDGET_COLUMNS)
    rank = {p: n for n, p in enumerate((*PICKS, ALL_PAIRS))}
    order = table.assign(_pick=table["pick"].map(rank))
    order = order.sort_values(["dataset", "generator", "evaluator", "_pick", "budget"], kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def _fmt(x, digits: int = 3) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def _interval(r: dict, name: str) -> str:
    if not r[f"{name}_n"]:
        return "—"
    if r[f"{name}_low"] is None or pd.isna(r[f"{name}_low"]):
        n = int(r[f"{name}_questions"])
        return f"none: {n} question{'s' * (n != 1)}"
    return f"[{_fmt(r[f'{name}_low'])}, {_fmt(r[f'{name}_high'])}]"


def budget_rows_shown(table: pd.DataFrame) -> list[dict]:
    """The budget table as the report shows it: readable names, rounded values, intervals."""
    return [{"dataset": r["dataset"], "generator": r["generator"], "evaluator": r["evaluator"],
             "budget (calls)": "all" if r["pick"] == ALL_PAIRS else int(r["budget"]), "pick": r["pick"],
             "pairs asked": f"{int(r['pairs_asked'])} of {int(r['wow_pairs'])}", "calls spent": int(r["judge_calls"]),
             "AccWoW": _fmt(r["accwow"]), "interval": _interval(r, "accwow"),
             "filtered AccWoW": _fmt(r["filtered"]), "filtered interval": _interval(r, "filtered"),
             "set size": int(r["set_size"])} for r in table.to_dict("records")]


def render_budget(name: str, table: pd.DataFrame, png_name: str, confidence: float) -> str:
    """Budget-aware judging as markdown: what is measured, a table per dataset, the plot (`png_name`)."""
    from wow_core.report import markdown_table  # here, not at the top: the report may import this module
    out = [f"# Budget-aware judging: {name}", "",
           "The pairwise judge asked only about the pairs a pick rule ranks first, at each budget of judge calls "
           "per dataset, generator and evaluator. A pair costs 2 calls (both orders): budget B asks the first "
           "B // 2 pairs of the pick's ranking; a follow-up turn after an unparsed verdict is spent, not "
           "budgeted (*calls spent* counts it). No pick reads the proxy, only which pairs exist and the self "
           "signals that come with sampling:", "",
           "- **random**, the baseline at the same budget: a seeded draw of the pairs.",
           "- **disagreement**: first the pairs on which consistency and log-probs do not prefer the same answer "
           "(a tie or a missing value prefers neither), then the rest, each as smallest_gap.",
           "- **smallest_gap**: the pairs whose answers' mean token log-probs are closest first, a pair without "
           "log-probs last, equal gaps in the random order.", "",
           "Each budget's pairs are the start of its pick's ranking. *AccWoW*: the share of parsed verdicts that "
           "prefer the less wrong answer (chance: 0.500); *filtered*: the same of the pairs whose two orders "
           "parsed and agree, whose count is the *set size* a pairwise_filtered preference set would hold. A "
           "non-random pick chooses a different population of pairs, harder ones by design: its AccWoW is the "
           "judge's on those pairs, not an estimate of the judge on all pairs (random's is). *all*: the grid's "
           "own pairwise judgment, of every pair it asked (all of them, or `judge.max_pairs_per_question` of "
           f"each question's), where the curves are heading. Intervals: {confidence * 100:g} %, resting on "
           f"questions; none on fewer than {MIN_QUESTIONS} questions (docs/methods.md, \"Budget-aware judging\").",
           ""]
    for dataset, part in table.groupby("dataset", sort=False):
        rows = [{k: v for k, v in r.items() if k != "dataset"} for r in budget_rows_shown(part)]
        out += [f"## {dataset}", "", *markdown_table(rows), ""]
    out += [f"![AccWoW and preference-set size against judge calls spent, per pick]({png_name})", ""]
    return "\n".join(out)


PICK_STYLE = {"random": ("0.15", "o", "--"), "disagreement": ("C0", "s", "-"), "smallest_gap": ("C1", "^", "-")}
PANELS_PER_ROW = 4
NUMBERS = ["budget", "judge_calls", "accwow", "accwow_low", "accwow_high", "set_size"]


def plot_budget(table: pd.DataFrame, confidence: float | None = None) -> bytes:
    """A column per (dataset, generator, evaluator) cell, wrapped after PANELS_PER_ROW: AccWoW (top) and set
    size (bottom) against judge calls spent, a line per pick, random dashed; the full judge dotted, chance
    at 0.5."""
    # Float columns: a column of intervals that are all None (few questions) is stored as objects.
    table = table.astype({c: float for c in NUMBERS})
    cells = list(table.groupby(["dataset", "generator", "evaluator"], sort=False))
    columns = min(max(len(cells), 1), PANELS_PER_ROW)
    blocks = max(-(-len(cells) // PANELS_PER_ROW), 1)
    fig = Figure(figsize=(3.4 * columns, 5.2 * blocks + 0.4), layout="constrained", dpi=110)
    axes = fig.subplots(2 * blocks, columns, squeeze=False)
    for k in range(len(cells), blocks * columns):  # the last block's empty places
        for ax in axes[2 * (k // columns)][k % columns], axes[2 * (k // columns) + 1][k % columns]:
            ax.set_visible(False)
    for k, ((dataset, generator, evaluator), part) in enumerate(cells):
        top, bottom = axes[2 * (k // columns)][k % columns], axes[2 * (k // columns) + 1][k % columns]
        for pick, (colour, marker, line) in PICK_STYLE.items():
            rows = part[part["pick"] == pick].sort_values("budget")
            if rows.empty:
                continue
            low = (rows["accwow"] - rows["accwow_low"]).fillna(0).clip(lower=0)
            high = (rows["accwow_high"] - rows["accwow"]).fillna(0).clip(lower=0)
            top.errorbar(rows["judge_calls"], rows["accwow"], yerr=[low, high], color=colour, marker=marker,
                         linestyle=line, markersize=4, capsize=2, linewidth=1.2, label=pick)
            bottom.plot(rows["judge_calls"], rows["set_size"], color=colour, marker=marker, linestyle=line,
                        markersize=4, linewidth=1.2, label=pick)
        for r in part[part["pick"] == ALL_PAIRS].itertuples():
            label = f"all pairs ({int(r.judge_calls)} calls)"
            if not pd.isna(r.accwow):
                top.axhline(r.accwow, color="grey", linestyle=":", linewidth=1.2, label=label)
            bottom.axhline(r.set_size, color="grey", linestyle=":", linewidth=1.2, label=label)
        top.axhline(0.5, color="0.75", linewidth=0.7, label="chance")
        top.set_ylim(0, 1.02)
        top.set_title(f"{dataset}\n{generator} judged by {evaluator}", fontsize=8)
        top.set_ylabel("AccWoW (unfiltered)", fontsize=8)
        bottom.set_ylabel("set size (filtered pairs)", fontsize=8)
        bottom.set_ylim(bottom=0)
        for ax in (top, bottom):
            ax.set_xlabel("judge calls spent", fontsize=8)
            ax.grid(color="0.93")
            ax.tick_params(labelsize=7)
        top.legend(fontsize=6, loc="lower right")
    level = f"{confidence * 100:g} % intervals" if confidence else "intervals"
    fig.suptitle(f"Budget-aware judging; whiskers: {level} on questions (none on fewer than {MIN_QUESTIONS})",
                 fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
