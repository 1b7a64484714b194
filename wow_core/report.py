"""The elicitation report: AccWoW per dataset x generator x evaluator x method x margin, with pair
counts and intervals, judge parse statistics, and a bar chart."""
import io

import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

from wow_core.elicit import VERDICT_METHODS, pairwise_agreement, wow_pairs
from wow_core.metrics import accwow, margin_filter

ACCWOW_COLUMNS = ["dataset", "generator", "evaluator", "method", "margin", "accwow", "n_pairs", "ci_low", "ci_high"]
VERSION = 2  # 2: judges' verdict turns counted as reasoning / follow-up / direct

SELF = "(self)"  # evaluator of the methods that need none: length, consistency, logits


def accwow_table(entries: list[dict], margins: list[float], confidence: float) -> pd.DataFrame:
    """One row per entry x margin. Each entry: dataset, generator, evaluator, method, pairs (DataFrame).
    Verdicts without a score gap (pairwise) have no margin filter: reported at margin 1.0 only."""
    rows = []
    for e in entries:
        for margin in margins:
            if e["method"] in VERDICT_METHODS and margin < 1:
                continue
            acc = accwow(margin_filter(e["pairs"], margin), confidence)
            rows.append({"dataset": e["dataset"], "generator": e["generator"], "evaluator": e["evaluator"],
                         "method": e["method"], "margin": margin, "accwow": acc.value, "n_pairs": acc.n_pairs,
                         "ci_low": acc.low, "ci_high": acc.high})
    return pd.DataFrame(rows, columns=ACCWOW_COLUMNS)


def sample_summary(samples: pd.DataFrame) -> dict:
    """Counts that say what the judges had to work with."""
    extracted = samples["extracted"].notna()
    return {
        "questions": int(samples["question_id"].nunique()), "samples": len(samples),
        "extracted": int(extracted.sum()),
        "by_conclusion": int((samples["extraction_method"] == "conclusion").sum()),
        "by_direct_parse": int((samples["extraction_method"] == "direct").sum()),
        "correct": int((samples["correct"] == True).sum()),  # noqa: E712 (nullable column)
        "wrong": int((samples["correct"] == False).sum()),  # noqa: E712
        "wow_pairs": len(wow_pairs(samples)),
    }


def judge_summary(method: str, judgments: pd.DataFrame) -> dict:
    """How often the judge's verdict parsed, from which turn, and (pairwise) order agreement."""
    verdict = "preferred" if method == "pairwise" else "score"
    parsed = judgments[verdict].notna()
    out = {"verdicts": len(judgments), "parsed": int(parsed.sum()), "parse_failures": int((~parsed).sum()),
           "from_reasoning": int((judgments["verdict_source"] == "reasoning").sum()),
           "from_follow_up": int((judgments["verdict_source"] == "follow_up").sum()),
           "direct": int((judgments["verdict_source"] == "direct").sum())}
    if method == "pairwise":
        agree, both = pairwise_agreement(judgments)
        out["both_orders_parsed"] = both
        out["agreement_rate"] = agree / both if both else None
    return out


def _fmt(x, digits=3) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def render_markdown(name: str, table: pd.DataFrame, samples: list[dict], judges: list[dict], png_name: str,
                    confidence: float) -> str:
    """The report as markdown. `samples`: dicts with dataset, generator and `sample_summary` fields;
    `judges`: dicts with dataset, generator, evaluator, method and `judge_summary` fields; `png_name`:
    the chart's file name, beside the markdown file."""
    level = f"{confidence * 100:g} %"
    out = [f"# AccWoW report: {name}", "",
           "AccWoW = share of kept wrong-over-wrong pairs on which the method prefers the less wrong answer "
           f"(ties count as not preferring). **Random baseline: 0.500.** Interval: Wilson {level}. Margin = top-p "
           "of pairs by score gap; pairwise verdicts have no gap and are reported at 1.0 (its *filtered* "
           "variant keeps the pairs whose two orders agree).", "",
           f"| dataset | generator | evaluator | method | margin | AccWoW | pairs | {level} interval |",
           "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        out.append(f"| {r.dataset} | {r.generator} | {r.evaluator} | {r.method} | {r.margin:g} | {_fmt(r.accwow)} "
                   f"| {r.n_pairs} | [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] |")
    out += ["", "## Samples", "", "| dataset | generator | questions | samples | extracted (conclusion / direct) "
            "| correct | wrong | WoW pairs |", "|---|---|---|---|---|---|---|---|"]
    for s in samples:
        out.append(f"| {s['dataset']} | {s['generator']} | {s['questions']} | {s['samples']} | {s['extracted']} "
                   f"({s['by_conclusion']} / {s['by_direct_parse']}) | {s['correct']} | {s['wrong']} | {s['wow_pairs']} |")
    out += ["", "## Judges", "", "| dataset | generator | evaluator | method | verdicts | parsed | parse failures "
            "| verdict turn: reasoning / follow-up / direct | both-orders agreement |", "|---|---|---|---|---|---|---|---|---|"]
    for j in judges:
        agreement = (f"{_fmt(j['agreement_rate'])} of {j['both_orders_parsed']}" if "agreement_rate" in j else "")
        out.append(f"| {j['dataset']} | {j['generator']} | {j['evaluator']} | {j['method']} | {j['verdicts']} "
                   f"| {j['parsed']} | {j['parse_failures']} | {j['from_reasoning']} / {j['from_follow_up']} / {j['direct']} "
                   f"| {agreement} |")
    out += ["", f"![AccWoW by method and margin]({png_name})", ""]
    return "\n".join(out)


def plot_accwow(table: pd.DataFrame) -> bytes:
    """Grouped bars: one panel per dataset x generator x evaluator set, methods on x, margins as bars."""
    panels = list(table.groupby(["dataset", "generator"], sort=False))
    fig = Figure(figsize=(max(8, 0.9 * table["method"].nunique() + 3), 3.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    margins = sorted(table["margin"].unique(), reverse=True)
    width = 0.8 / max(1, len(margins))
    for ax, ((dataset, generator), part) in zip(axes[:, 0], panels):
        labels = list(dict.fromkeys(f"{m}\n{e}" for m, e in zip(part["method"], part["evaluator"])))
        for n, margin in enumerate(margins):
            rows = part[part["margin"] == margin]
            xs, ys, errs = [], [], [[], []]
            for r in rows.itertuples():
                if r.accwow is None or pd.isna(r.accwow):
                    continue
                xs.append(labels.index(f"{r.method}\n{r.evaluator}") + (n - (len(margins) - 1) / 2) * width)
                ys.append(r.accwow)
                # max(0, ...): the Wilson bound of an AccWoW of exactly 0 or 1 can differ from it by rounding.
                errs[0].append(max(0.0, r.accwow - r.ci_low))
                errs[1].append(max(0.0, r.ci_high - r.accwow))
            ax.bar(xs, ys, width, yerr=errs, capsize=2, label=f"top-{margin:g}")
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="random")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("AccWoW")
        ax.set_title(f"{dataset} · generator {generator}")
        ax.legend(fontsize=7, ncols=len(margins) + 1, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


ALIGNMENT_METRIC_NAMES = {"proxy_score": "proxy score", "wrong_only_proxy": "wrong-only proxy (less wrong)",
                          "accuracy": "accuracy (more correct)", "ece": "ECE (lower is better)"}


def render_alignment_markdown(name: str, table: pd.DataFrame, runs: list[dict], untrained: list[dict],
                              png_names: list[str]) -> str:
    """The alignment section: base vs aligned per preference set, training runs, reliability diagrams.

    `table`: `evaluate.alignment_table` rows with a `model` column; `runs`: model, preference_set,
    trained_on, grid_point, train, n_pairs, summary; `untrained`: sets with too few pairs."""
    from wow_core.evaluate import METRICS
    out = [f"# Alignment report: {name}", "",
           "Base model vs its LoRA adapter trained on each preference set, on held-out questions that no "
           "preference set contains. Cells: base → aligned, Δ with its paired bootstrap 95 % interval (questions "
           "resampled). With several grid points per set, the best (by proxy score) is selected on one half of "
           "the held-out questions and reported on the other half. *transfer* = evaluated on a dataset the "
           "adapter was not trained on.", ""]
    header = " | ".join(ALIGNMENT_METRIC_NAMES[m] for m in METRICS)
    out += [f"| model | dataset | preference set | trained on | pairs | questions | {header} |",
            "|---|---|---|---|---|---|" + "---|" * len(METRICS)]
    keys = ["model", "dataset", "preference_set", "trained_on"]
    for (model, ds, pset, trained_on), part in table.groupby(keys, sort=False):
        by_metric = part.set_index("metric")
        first = part.iloc[0]
        cells = []
        for m in METRICS:
            r = by_metric.loc[m]
            cells.append(f"{_fmt(r.base)} → {_fmt(r.aligned)}<br>Δ {_signed(r.delta)} [{_signed(r.low)}, {_signed(r.high)}]")
        where = f"{trained_on} (transfer)" if first["transfer"] else trained_on
        out.append(f"| {model} | {ds} | {pset} | {where} | {first['n_pairs']} | {first['n_questions']} | "
                   + " | ".join(cells) + " |")
    for u in untrained:
        out.append(f"| {u['model']} | {u['trained_on']} | {u['preference_set']} | {u['trained_on']} | {u['n_pairs']} "
                   f"| — | not trained: fewer than 2 pairs |" + " |" * (len(METRICS) - 1))
    out += ["", "## Training runs", "",
            "| model | preference set | trained on | grid point | settings | train pairs | eval pairs | steps "
            "| train loss | eval loss | pairs/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        s = r["summary"]
        settings = ", ".join(f"{k}={v}" for k, v in r["train"].items()) or "defaults"
        out.append(f"| {r['model']} | {r['preference_set']} | {r['trained_on']} | {r['grid_point']} | {settings} "
                   f"| {s['n_train_pairs']} | {s['n_eval_pairs']} | {s['steps']} | {_fmt(s['train_loss'], 4)} "
                   f"| {_fmt(s['eval_loss'], 4)} | {_fmt(s['samples_per_second'], 2)} |")
    out += ["", "## Reliability diagrams", ""] + [f"![reliability]({p})" for p in png_names] + [""]
    return "\n".join(out)


def _signed(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:+.3f}"


def plot_reliability(answers: dict[str, pd.DataFrame], title: str) -> bytes:
    """Reliability diagrams side by side (one per model): accuracy per confidence bin vs the diagonal."""
    from wow_core.evaluate import alignment_metrics, reliability_bins
    fig = Figure(figsize=(3.2 * len(answers), 3.4))
    axes = fig.subplots(1, len(answers), squeeze=False)[0]
    for ax, (label, samples) in zip(axes, answers.items()):
        bins = reliability_bins(samples)
        filled = bins[bins["n"] > 0]
        ax.bar(filled["low"], filled["accuracy"], width=0.1, align="edge", edgecolor="black", label="accuracy")
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{label}\nECE {_fmt(alignment_metrics(samples)['ece'])}", fontsize=8)
    axes[0].set_ylabel("accuracy")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
