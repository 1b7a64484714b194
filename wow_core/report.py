"""The elicitation report: AccWoW per dataset x generator x evaluator x method x margin, with pair
counts and intervals, judge parse statistics, and a bar chart."""
import io

import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

from wow_core.elicit import VERDICT_METHODS, pairwise_agreement, wow_pairs
from wow_core.metrics import accwow, margin_filter

ACCWOW_COLUMNS = ["dataset", "generator", "evaluator", "method", "margin", "accwow", "n_pairs", "ci_low", "ci_high"]
VERSION = 1

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
           "from_follow_up": int((judgments["verdict_source"] == "follow_up").sum())}
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
            "| from follow-up | both-orders agreement |", "|---|---|---|---|---|---|---|---|---|"]
    for j in judges:
        agreement = (f"{_fmt(j['agreement_rate'])} of {j['both_orders_parsed']}" if "agreement_rate" in j else "")
        out.append(f"| {j['dataset']} | {j['generator']} | {j['evaluator']} | {j['method']} | {j['verdicts']} "
                   f"| {j['parsed']} | {j['parse_failures']} | {j['from_follow_up']} | {agreement} |")
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
                errs[0].append(r.accwow - r.ci_low)
                errs[1].append(r.ci_high - r.accwow)
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
