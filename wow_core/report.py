"""The elicitation report: AccWoW per dataset x generator x evaluator x method x margin, with pair
counts and intervals, judge parse statistics, and a bar chart."""
import io

import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

from wow_core.elicit import VERDICT_METHODS, wow_pairs
from wow_core.judge_reliability import pairwise_reliability, picks_by_position, score_reliability
from wow_core.metrics import MIN_QUESTIONS, Rate, accwow, margin_filter

ACCWOW_COLUMNS = ["dataset", "generator", "evaluator", "method", "margin", "accwow", "n_pairs", "n_questions",
                  "ci_low", "ci_high"]
VERSION = 3  # 3: question-clustered intervals, questions per cell

SELF = "(self)"  # evaluator of the methods that need none: length, consistency, logits


def accwow_table(entries: list[dict], margins: list[float], confidence: float, protocol: str = "wow") -> pd.DataFrame:
    """One row per entry x margin. Each entry: dataset, generator, evaluator, method, pairs (DataFrame).
    Verdicts without a score gap (pairwise) have no margin filter: reported at margin 1.0 only. The
    margin filter keeps as many pairs as `protocol` says (`metrics.margin_filter`)."""
    rows = []
    for e in entries:
        for margin in margins:
            if e["method"] in VERDICT_METHODS and margin < 1:
                continue
            acc = accwow(margin_filter(e["pairs"], margin, protocol), confidence)
            rows.append({"dataset": e["dataset"], "generator": e["generator"], "evaluator": e["evaluator"],
                         "method": e["method"], "margin": margin, "accwow": acc.value, "n_pairs": acc.n,
                         "n_questions": acc.n_questions, "ci_low": acc.low, "ci_high": acc.high})
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


def judge_table(judges: list[dict]) -> pd.DataFrame:
    """The judge reliability table: one row per (dataset, generator, evaluator, method) of `judges`
    (dicts with those keys and `judge_summary` fields). A config without a judge model has no rows, but
    the key columns are there for whoever filters the table."""
    rows = [{k: v for k, v in j.items() if k != "uri"} for j in judges]
    return pd.DataFrame(rows, columns=None if rows else ["dataset", "generator", "evaluator", "method"])


def judge_summary(method: str, judgments: pd.DataFrame, confidence: float = 0.95) -> dict:
    """How often the judge's verdict parsed and from which turn; for the pairwise judge also its
    position consistency, first-position share and Cohen's kappa between the two orders
    (wow_core/judge_reliability.py), each with its interval."""
    verdict = "preferred" if method == "pairwise" else "score"
    parsed = judgments[verdict].notna()
    out = {"verdicts": len(judgments), "parsed": int(parsed.sum()), "parse_failures": int((~parsed).sum()),
           "from_reasoning": int((judgments["verdict_source"] == "reasoning").sum()),
           "from_follow_up": int((judgments["verdict_source"] == "follow_up").sum()),
           "direct": int((judgments["verdict_source"] == "direct").sum())}
    if method == "pairwise":
        rel = pairwise_reliability(judgments, confidence)
        out |= {"kappa": rel["kappa"], "kappa_low": rel["kappa_low"], "kappa_high": rel["kappa_high"]}
    else:
        rel = score_reliability(judgments, confidence)
    for name, rate in rel.items():
        if isinstance(rate, Rate):
            out |= {name: rate.value, f"{name}_n": rate.n, f"{name}_questions": rate.n_questions,
                    f"{name}_low": rate.low, f"{name}_high": rate.high}
    return out


def _rate(j: dict, name: str, digits: int = 2) -> str:
    """A rate with its interval, or what it rests on when it has none."""
    if j.get(name) is None or pd.isna(j[name]):
        return "—"
    interval = (f"[{_fmt(j[f'{name}_low'], digits)}, {_fmt(j[f'{name}_high'], digits)}]"
                if j[f"{name}_low"] is not None and not pd.isna(j[f"{name}_low"])
                else f"(none: {j[f'{name}_questions']} question{'s' * (j[f'{name}_questions'] != 1)})")
    return f"{_fmt(j[name], digits)} {interval} of {j[f'{name}_n']}"


def _kappa(j: dict) -> str:
    if j.get("kappa") is None or pd.isna(j["kappa"]):
        return "—"
    interval = (f"[{j['kappa_low']:+.2f}, {j['kappa_high']:+.2f}]" if j["kappa_low"] is not None
                and not pd.isna(j["kappa_low"]) else "(no interval)")
    return f"{j['kappa']:+.2f} {interval}"


def position_findings(judges: list[dict]) -> list[str]:
    """Plain sentences for the pairwise judges that pick by position."""
    lines = []
    for j in judges:
        if j["method"] != "pairwise" or j.get("first_position") is None or pd.isna(j["first_position"]):
            continue
        share, who = j["first_position"], (f"{j['evaluator']} judging {j['generator']}'s answers on "
                                           f"{j['dataset']}")
        side = "first" if share > 0.5 else "second"
        consistency = ("" if j.get("position_consistency") is None or pd.isna(j["position_consistency"])
                       else f"; the two orders agree on {j['position_consistency']:.0%} of the pairs")
        if picks_by_position(Rate(share, j["first_position_n"], j["first_position_questions"],
                                  j["first_position_low"], j["first_position_high"])):
            lines.append(f"- **{who} picks the answer shown {side} in {max(share, 1 - share):.0%} of its "
                         f"{j['first_position_n']} parsed verdicts** (interval excludes 0.5){consistency}: "
                         "position decides its verdicts more than the answers do.")
        elif j["first_position_low"] is None and abs(share - 0.5) >= 0.25:
            lines.append(f"- {who} picks the answer shown {side} in {max(share, 1 - share):.0%} of its "
                         f"{j['first_position_n']} parsed verdicts, on {j['first_position_questions']} "
                         f"question{'s' * (j['first_position_questions'] != 1)}: "
                         f"too few for an interval{consistency}.")
    return lines


def _fmt(x, digits=3) -> str:
    return "—" if x is None or pd.isna(x) else f"{x:.{digits}f}"


def _interval(r) -> str:
    if r.n_pairs == 0:
        return "—"
    if r.ci_low is None or pd.isna(r.ci_low):
        return f"none: {r.n_questions} question{'s' * (r.n_questions != 1)}"
    return f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"


def render_markdown(name: str, table: pd.DataFrame, samples: list[dict], judges: list[dict], png_name: str,
                    confidence: float, protocol: str = "wow") -> str:
    """The report as markdown. `samples`: dicts with dataset, generator and `sample_summary` fields;
    `judges`: dicts with dataset, generator, evaluator, method and `judge_summary` fields; `png_name`:
    the chart's file name, beside the markdown file."""
    level = f"{confidence * 100:g} %"
    out = [f"# AccWoW report: {name}", "",
           "AccWoW = share of kept wrong-over-wrong pairs on which the method prefers the less wrong answer "
           f"(ties count as not preferring). **Random baseline: 0.500.** Interval: {level}, resting on questions, "
           "not pairs (the pairs of one question are not independent): Wilson's at the effective number of "
           "pairs of a question-clustered variance; a cell on fewer than "
           f"{MIN_QUESTIONS} questions has none (docs/methods.md). Margin = top-p "
           "of pairs by score gap; pairwise verdicts have no gap and are reported at 1.0 (its *filtered* "
           "variant keeps the pairs whose two orders agree). Methods computed "
           + ("as the paper's reference code computes them (`judge.protocol: paper`)." if protocol == "paper"
              else "the wow way (`judge.protocol: wow`; docs/methods.md says where the paper's code differs)."), "",
           f"| dataset | generator | evaluator | method | margin | AccWoW | pairs | questions | {level} interval |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        out.append(f"| {r.dataset} | {r.generator} | {r.evaluator} | {r.method} | {r.margin:g} | {_fmt(r.accwow)} "
                   f"| {r.n_pairs} | {r.n_questions} | {_interval(r)} |")
    out += ["", "## Samples", "", "| dataset | generator | questions | samples | extracted (conclusion / direct) "
            "| correct | wrong | WoW pairs |", "|---|---|---|---|---|---|---|---|"]
    for s in samples:
        out.append(f"| {s['dataset']} | {s['generator']} | {s['questions']} | {s['samples']} | {s['extracted']} "
                   f"({s['by_conclusion']} / {s['by_direct_parse']}) | {s['correct']} | {s['wrong']} | {s['wow_pairs']} |")
    out += ["", "## Judges", "",
            "Parse rate: verdicts that named an answer (or score). For the pairwise judge, asked every pair in "
            "both orders: *position consistency*, the share of pairs whose two orders chose the same answer (1 "
            "is ideal); *first position*, the share of parsed verdicts for the answer shown first (0.5 = no "
            "position bias); *kappa*, Cohen's between the two orders (0 = chance). Intervals as above, kappa's "
            "by a bootstrap over questions (docs/methods.md).", "",
            "| dataset | generator | evaluator | method | verdicts | verdict turn: reasoning / follow-up / direct "
            "| parse rate | position consistency | first position | kappa |", "|---|---|---|---|---|---|---|---|---|---|"]
    for j in judges:
        pairwise = j["method"] == "pairwise"
        out.append(f"| {j['dataset']} | {j['generator']} | {j['evaluator']} | {j['method']} | {j['verdicts']} "
                   f"| {j['from_reasoning']} / {j['from_follow_up']} / {j['direct']} | {_rate(j, 'parse_rate')} "
                   f"| {_rate(j, 'position_consistency') if pairwise else ''} "
                   f"| {_rate(j, 'first_position') if pairwise else ''} | {_kappa(j) if pairwise else ''} |")
    findings = position_findings(judges)
    if findings:
        out += ["", "Position bias:", "", *findings]
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
                # No bar for a cell without an interval (too few questions); max(0, ...): a Wilson bound of
                # an AccWoW of exactly 0 or 1 can differ from it by rounding.
                none = r.ci_low is None or pd.isna(r.ci_low)
                errs[0].append(0.0 if none else max(0.0, r.accwow - r.ci_low))
                errs[1].append(0.0 if none else max(0.0, r.ci_high - r.accwow))
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


SELECTION_TEXT = {"eval_loss": "by eval_loss, as the paper describes it: the lowest DPO loss on the set's own "
                                "held-out 10 % of pairs, reported on every held-out question",
                  "proxy": "by proxy: the best proxy score on one half of the held-out questions, reported on "
                           "the other half"}


def adapter_label(preference_set: str, trained_on: str, dataset: str) -> str:
    """How an adapter is named where it is evaluated: by its set, and where it was trained if elsewhere."""
    return preference_set if trained_on == dataset else f"{preference_set} (trained on {trained_on})"


def render_alignment_markdown(name: str, table: pd.DataFrame, runs: list[dict], untrained: list[dict],
                              diagrams: list[tuple[str, str, list[str]]]) -> str:
    """The alignment section: base vs aligned per preference set, training runs, reliability diagrams.

    `table`: `evaluate.alignment_table` rows with a `model` column; `runs`: model, preference_set,
    trained_on, grid_point, train, n_pairs, summary; `untrained`: sets with too few pairs; `diagrams`:
    (PNG file name, title, its panels) per reliability diagram."""
    from wow_core.evaluate import METRICS
    out = [f"# Alignment report: {name}", "",
           "Base model vs its LoRA adapter trained on each preference set, on held-out questions that no "
           "preference set contains. Cells: base → aligned, Δ with its paired bootstrap 95 % interval (questions "
           f"resampled; none on fewer than {MIN_QUESTIONS} questions). *transfer* = evaluated on a dataset the "
           "adapter was not trained on. *grid point*: the one selected among a set's grid points "
           f"({SELECTION_TEXT['eval_loss']}; or {SELECTION_TEXT['proxy']}), or the set's only one.", ""]
    header = " | ".join(ALIGNMENT_METRIC_NAMES[m] for m in METRICS)
    out += [f"| model | dataset | preference set | trained on | grid point | pairs | questions | {header} |",
            "|---|---|---|---|---|---|---|" + "---|" * len(METRICS)]
    keys = ["model", "dataset", "preference_set", "trained_on"]
    for (model, ds, pset, trained_on), part in table.groupby(keys, sort=False):
        by_metric = part.set_index("metric")
        first = part.iloc[0]
        cells = []
        for m in METRICS:
            r = by_metric.loc[m]
            interval = (f"none: {first['n_questions']} questions" if pd.isna(r.low) and not pd.isna(r.delta)
                        else f"[{_signed(r.low)}, {_signed(r.high)}]")
            cells.append(f"{_fmt(r.base)} → {_fmt(r.aligned)}<br>Δ {_signed(r.delta)} {interval}")
        where = f"{trained_on} (transfer)" if first["transfer"] else trained_on
        point = f"{first['grid_point']}" + ("" if first["selected_by"] == "single" else f" (by {first['selected_by']})")
        out.append(f"| {model} | {ds} | {pset} | {where} | {point} | {first['n_pairs']} | {first['n_questions']} | "
                   + " | ".join(cells) + " |")
    for u in untrained:
        out.append(f"| {u['model']} | {u['trained_on']} | {u['preference_set']} | {u['trained_on']} | — | {u['n_pairs']} "
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
    out += ["", "## Reliability diagrams", ""] + [f"![reliability, {title}: {', '.join(panels)}]({png})"
                                                  for png, title, panels in diagrams] + [""]
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
