"""The elicitation report: AccWoW per dataset x generator x evaluator x method x margin, with pair
counts and intervals, judge parse statistics, and one dot plot per dataset."""
import io
import re
import textwrap

import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global backend or figure state
from matplotlib.lines import Line2D

from wow_core.elicit import VERDICT_METHODS, wow_pairs
from wow_core.judge_reliability import pairwise_reliability, picks_by_position, score_reliability
from wow_core.methods import SELF
from wow_core.metrics import MIN_QUESTIONS, Rate, accwow, margin_filter

ACCWOW_COLUMNS = ["dataset", "generator", "evaluator", "method", "margin", "accwow", "n_pairs", "n_questions",
                  "ci_low", "ci_high"]
VERSION = 4  # 3: question-clustered intervals, questions per cell; 4: one AccWoW plot per dataset



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
                else f"(none: {int(j[f'{name}_questions'])} question{'s' * (j[f'{name}_questions'] != 1)})")
    return f"{_fmt(j[name], digits)} {interval} of {int(j[f'{name}_n'])}"


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


def markdown_table(rows: list[dict]) -> list[str]:
    """Rows of display strings (as `accwow_rows` makes them) as the lines of a markdown table."""
    if not rows:
        return ["(none)"]
    return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])] + [
        "| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]


def accwow_rows(table: pd.DataFrame, confidence: float) -> list[dict]:
    """The AccWoW table as the report shows it: readable column names, rounded values, intervals."""
    return [{"dataset": r.dataset, "generator": r.generator, "evaluator": r.evaluator, "method": r.method,
             "margin": f"{r.margin:g}", "AccWoW": _fmt(r.accwow), "pairs": int(r.n_pairs),
             "questions": int(r.n_questions), f"{confidence * 100:g} % interval": _interval(r)}
            for r in table.itertuples()]


def judge_rows(judges: list[dict]) -> list[dict]:
    """The judge reliability table as the report shows it (`judges`: `judge_table` rows as dicts)."""
    out = []
    for j in judges:
        pairwise = j["method"] == "pairwise"
        out.append({"dataset": j["dataset"], "generator": j["generator"], "evaluator": j["evaluator"],
                    "method": j["method"], "verdicts": int(j["verdicts"]),
                    "verdict turn: reasoning / follow-up / direct":
                        f"{int(j['from_reasoning'])} / {int(j['from_follow_up'])} / {int(j['direct'])}",
                    "parse rate": _rate(j, "parse_rate"),
                    "position consistency": _rate(j, "position_consistency") if pairwise else "",
                    "first position": _rate(j, "first_position") if pairwise else "",
                    "kappa": _kappa(j) if pairwise else ""})
    return out


def render_markdown(name: str, table: pd.DataFrame, samples: list[dict], judges: list[dict], png_names: dict[str, str],
                    confidence: float, protocol: str = "wow", ensembles: dict[str, list[str]] | None = None) -> str:
    """The report as markdown. `samples`: dicts with dataset, generator and `sample_summary` fields;
    `judges`: dicts with dataset, generator, evaluator, method and `judge_summary` fields; `png_names`:
    dataset -> file name of its plot (`plot_accwow`), beside the markdown file; each is linked on its own
    line under its dataset's heading; `ensembles`: judge ensemble name -> members, said under the table."""
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
           *markdown_table(accwow_rows(table, confidence))]
    if ensembles:
        out += ["", "Judge ensembles, evaluators of their own from their members' judgments (no model call; "
                "*majority*: every parsed verdict of each member, both orders, is a vote, a tie prefers neither; "
                "*mean*: the members' mean score of each answer; *unanimous*: only the pairs all members' verdicts "
                "agree on; docs/methods.md): "
                + "; ".join(f"**{e}** = {' + '.join(m)}" for e, m in ensembles.items()) + "."]
    out += ["", "## Samples", "", "| dataset | generator | questions | samples | extracted (conclusion / direct) "
            "| correct | wrong | WoW pairs |", "|---|---|---|---|---|---|---|---|"]
    for s in samples:
        out.append(f"| {s['dataset']} | {s['generator']} | {s['questions']} | {s['samples']} | {s['extracted']} "
                   f"({s['by_conclusion']} / {s['by_direct_parse']}) | {s['correct']} | {s['wrong']} "
                   f"| {s['wow_pairs']} |")
    out += ["", "## Judges", "",
            "Parse rate: verdicts that named an answer (or score). For the pairwise judge, asked every pair in "
            "both orders: *position consistency*, the share of pairs whose two orders chose the same answer (1 "
            "is ideal); *first position*, the share of parsed verdicts for the answer shown first (0.5 = no "
            "position bias); *kappa*, Cohen's between the two orders (0 = chance). Intervals as above, kappa's "
            "by a bootstrap over questions (docs/methods.md).", "",
            *markdown_table(judge_rows(judges))]
    findings = position_findings(judges)
    if findings:
        out += ["", "Position bias:", "", *findings]
    if png_names:
        out += ["", "## AccWoW plots", "",
                "One plot per dataset: a row per method, sorted by its best AccWoW on all pairs (the largest "
                "margin); a marker per evaluator (self signals, which need none: black diamonds) with its "
                f"{level} interval as whiskers; an open marker is a cell on fewer than {MIN_QUESTIONS} "
                "questions, which has no interval. A panel per margin and per generator; beside each cell its "
                "pairs and questions. The dashed line is the random baseline, 0.5."]
        for dataset, png in png_names.items():
            out += ["", f"### {dataset}", "", f"![AccWoW on {dataset} by method, evaluator and margin]({png})"]
        out.append("")
    return "\n".join(out)


_EVALUATOR_MARKERS = "os^vPXh*"  # no "D": the self signals


def accwow_row_order(part: pd.DataFrame) -> list[str]:
    """The methods of one dataset x generator in plotted order, top to bottom: by the best evaluator's
    AccWoW on the largest margin (normally 1, all pairs: the only one every method has, verdicts
    included), highest first; methods without a value there last; ties by name."""
    top = part[part["margin"] == part["margin"].max()]
    best = top.groupby("method", sort=False)["accwow"].max()

    def key(method: str) -> tuple:
        value = best.get(method)
        return (0, -value, method) if pd.notna(value) else (1, 0, method)
    return sorted(dict.fromkeys(part["method"]), key=key)


def _cell_note(r) -> str:
    if r.n_pairs == 0:
        return "no pairs"
    q = f"{r.n_pairs} pairs · {r.n_questions} q"
    return q + ": too few" if r.ci_low is None or pd.isna(r.ci_low) else q


def plot_accwow_dataset(table: pd.DataFrame, dataset: str, confidence: float | None = None) -> bytes:
    """One dataset's AccWoW as a dot plot: a row per method, sorted (`accwow_row_order`), one marker per
    evaluator with its interval as whiskers, x fixed at 0..1 with chance at 0.5; a panel per margin
    (columns) and per generator (rows); each cell's pairs and questions beside the panel. An open marker
    is a cell without an interval (fewer than MIN_QUESTIONS questions)."""
    part = table[table["dataset"] == dataset]
    if part.empty:
        fig = Figure(figsize=(5, 1.2), dpi=110)
        fig.text(0.5, 0.5, f"AccWoW on {dataset}: no cells (no pairs at any margin)", ha="center", va="center")
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    generators = list(dict.fromkeys(part["generator"]))
    margins = sorted(part["margin"].unique(), reverse=True)
    evaluators = sorted(dict.fromkeys(part["evaluator"]), key=lambda e: e != SELF)  # self first, then as given
    style = {SELF: ("black", "D")} | {e: (f"C{n % 10}", _EVALUATOR_MARKERS[n % len(_EVALUATOR_MARKERS)])
                                       for n, e in enumerate(x for x in evaluators if x != SELF)}
    # Rows: one per method, as tall as its evaluators need; y counts down from the top in slot units.
    layouts = []
    for gen in generators:
        g = part[part["generator"] == gen]
        rows, y = {}, 0.0
        for method in accwow_row_order(g):
            evs = [e for e in evaluators if ((g["method"] == method) & (g["evaluator"] == e)).any()]
            height = max(1, len(evs)) + 0.6
            rows[method] = (y + height / 2, {e: y + 0.8 + i for i, e in enumerate(evs)}, height)
            y += height
        layouts.append((gen, g, rows, y))
    slot_in = 0.2  # inches per evaluator slot
    heights = [max(y, 2.5) for *_, y in layouts]
    fig = Figure(figsize=(0.8 + 4.3 * len(margins), 1.6 + slot_in * sum(heights) + 0.5 * len(generators)),
                 layout="constrained", dpi=110)
    axes = fig.subplots(len(generators), len(margins), squeeze=False, sharey="row",
                        gridspec_kw={"height_ratios": heights})
    for (gen, g, rows, total), ax_row in zip(layouts, axes):
        for margin, ax in zip(margins, ax_row):
            cells = g[g["margin"] == margin]
            for method, (centre, slots, _height) in rows.items():
                mine = cells[cells["method"] == method]
                if mine.empty:
                    ax.text(0.5, centre, "no score gap: margin 1 only" if method in VERDICT_METHODS else "no cell",
                            ha="center", va="center", fontsize=7, color="grey", style="italic",
                            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                for r in mine.itertuples():
                    y, (colour, marker) = slots[r.evaluator], style[r.evaluator]
                    ax.annotate(_cell_note(r), xy=(1, y), xycoords=ax.get_yaxis_transform(), xytext=(8, 0),
                                textcoords="offset points", va="center", fontsize=7, color=colour,
                                annotation_clip=False, clip_on=False)
                    if r.accwow is None or pd.isna(r.accwow):
                        continue
                    none = r.ci_low is None or pd.isna(r.ci_low)
                    # max(0, ...): a Wilson bound of an AccWoW of exactly 0 or 1 can differ from it by rounding.
                    xerr = None if none else [[max(0.0, r.accwow - r.ci_low)], [max(0.0, r.ci_high - r.accwow)]]
                    ax.errorbar([r.accwow], [y], xerr=xerr, fmt=marker, color=colour, markersize=5, capsize=2,
                                elinewidth=1.2, markerfacecolor="white" if none else colour, clip_on=False)
            for _, (centre, _, height) in list(rows.items())[1:]:
                ax.axhline(centre - height / 2, color="0.9", linewidth=0.8)
            ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
            ax.set_xlim(0, 1)
            ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
            ax.grid(axis="x", color="0.93")
            ax.set_ylim(max(total, 2.5), 0)
            ax.set_yticks([c for c, _, _ in rows.values()], list(rows), fontsize=9)
            ax.tick_params(axis="y", length=0)
            what = "all pairs" if margin >= 1 else f"top {margin * 100:g} % of pairs by gap"
            ax.set_title(f"margin {margin:g}: {what}" + (f"\ngenerator {gen}" if len(generators) > 1 else ""),
                         fontsize=9)
            ax.set_xlabel("AccWoW", fontsize=8)
    level = f"{confidence * 100:g} % interval" if confidence else "interval"
    handles = [Line2D([], [], color=style[e][0], marker=style[e][1], linestyle="", label=e if e != SELF else
                      "self signal (no evaluator)") for e in evaluators]
    handles += [Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="",
                       label=f"no interval: fewer than {MIN_QUESTIONS} questions"),
                Line2D([], [], color="grey", marker="|", linestyle="-", label=f"{level} (on questions)"),
                Line2D([], [], color="grey", linestyle="--", label="random: 0.5")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4 if len(margins) > 1 else 2),
               fontsize=8, frameon=False)  # below the panels: it never covers a cell
    gens = f"generator {generators[0]}, " if len(generators) == 1 else ""
    on = "all pairs" if margins[0] >= 1 else f"margin {margins[0]:g}"
    title = f"AccWoW on {dataset}\n" + textwrap.fill(f"{gens}methods sorted by their best AccWoW on {on}",
                                                       int(fig.get_figwidth() * 12))
    fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plot_accwow(table: pd.DataFrame, confidence: float | None = None,
                datasets: list[str] | None = None) -> dict[str, bytes]:
    """One PNG per dataset (`plot_accwow_dataset`): {dataset: PNG bytes}, for `datasets` (default: those of
    `table`, in its order); a dataset without cells gets a plot that says so."""
    return {ds: plot_accwow_dataset(table, ds, confidence)
            for ds in (datasets if datasets is not None else dict.fromkeys(table["dataset"]))}


def plot_labels(datasets: list[str]) -> dict[str, str]:
    """dataset -> a distinct label for its plot's file name: letters, digits, '.', '_' and '-' only (a
    dataset's `label` is free text), numbered when two would otherwise be the same."""
    labels = {}
    for ds in dict.fromkeys(datasets):
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", ds).strip("._") or "dataset"
        labels[ds] = label if label not in labels.values() else f"{label}.{len(labels)}"
    return labels


def _count(x) -> str:
    return "—" if x is None or pd.isna(x) else f"{int(x):,}"


def leaderboard_rows(table: pd.DataFrame, confidence: float) -> list[dict]:
    """The judge leaderboard (`leaderboard.leaderboard_table`) as the report shows it, ranked."""
    out = []
    for rank, r in enumerate(table.to_dict("records"), 1):
        row = pd.Series(r)
        evaluator = f"{r['evaluator']} ({r['members']})" if r["members"] else r["evaluator"]
        out.append({"rank": rank, "evaluator": evaluator, "method": r["method"], "AccWoW": _fmt(r["accwow"]),
                    f"{confidence * 100:g} % interval": _interval(row), "pairs": int(r["n_pairs"]),
                    "questions": int(r["n_questions"]),
                    "datasets": f"{int(r['datasets'])} of {int(r['grid_datasets'])}",
                    "position consistency": _rate(r, "position_consistency"), "parse rate": _rate(r, "parse_rate"),
                    "judge calls": _count(r["judge_calls"]), "prompt tokens": _count(r["prompt_tokens"]),
                    "generated tokens": _count(r["generated_tokens"])})
    return out


def render_leaderboard(name: str, table: pd.DataFrame, png_name: str, confidence: float) -> str:
    """The judge leaderboard as markdown: what it ranks, the table, and its plot (`png_name`, beside it)."""
    level, n_datasets = f"{confidence * 100:g} %", _grid_datasets(table)
    return "\n".join([
        f"# Judge leaderboard: {name}", "",
        "Every evaluator and elicitation method of the grid, ranked by AccWoW on all its pairs (margin 1.0) "
        f"pooled over the grid's {n_datasets} dataset{'s' * (n_datasets != 1)} and every generator: the share of "
        "its wrong-over-wrong pairs on which it prefers the less wrong answer (ties count as not preferring). "
        f"**Random baseline: 0.500.** Interval: {level}, over the pooled pairs, resting on questions (every "
        f"generator's answers to one question are one cluster); none on fewer than {MIN_QUESTIONS} questions. "
        "*Position consistency*: of the pairs a pairwise judge answered in both orders, the share whose two "
        "verdicts chose the same answer; *parse rate*: the judge's verdicts that parsed; both pooled the same "
        "way, and empty for the self signals, which need no judge, and for judge ensembles (see their members' "
        "rows). *Cost*: the judge calls (a follow-up turn is one more) and the prompt and generated tokens of "
        "the judgments the method reads; an ensemble's are its members' summed, the self signals' 0 (they come "
        "with sampling); — where a backend reported no token counts. Methods keep different pairs (filtered and "
        "unanimous verdicts fewer): read each AccWoW with its pairs and questions (docs/methods.md, "
        "\"Judge leaderboard\").", "",
        *markdown_table(leaderboard_rows(table, confidence)), "",
        f"![Judge leaderboard: AccWoW by evaluator and method, pooled over every dataset]({png_name})", ""])


def _grid_datasets(table: pd.DataFrame) -> int:
    return int(table["grid_datasets"].max()) if len(table) else 0


def plot_leaderboard(table: pd.DataFrame, confidence: float | None = None) -> bytes:
    """The leaderboard as a dot plot: a row per (evaluator, method) in rank order, top to bottom, its AccWoW
    with its interval as whiskers (an open marker: no interval), a colour and marker per evaluator (self
    signals: black diamonds), beside each row its pairs, questions and judge calls; chance at 0.5."""
    evaluators = list(dict.fromkeys(table["evaluator"]))
    style = {SELF: ("black", "D")} | {e: (f"C{n % 10}", _EVALUATOR_MARKERS[n % len(_EVALUATOR_MARKERS)])
                                       for n, e in enumerate(x for x in evaluators if x != SELF)}
    fig = Figure(figsize=(8.5, 1.5 + 0.28 * max(len(table), 3)), layout="constrained", dpi=110)
    ax = fig.subplots()
    for y, r in enumerate(table.itertuples()):
        colour, marker = style[r.evaluator]
        note = ("no pairs" if r.n_pairs == 0
                else f"{r.n_pairs} pairs · {r.n_questions} q · {_count(r.judge_calls)} calls")
        ax.annotate(note, xy=(1, y), xycoords=ax.get_yaxis_transform(), xytext=(8, 0), textcoords="offset points",
                    va="center", fontsize=7, color=colour, annotation_clip=False)
        if r.accwow is None or pd.isna(r.accwow):
            continue
        none = r.ci_low is None or pd.isna(r.ci_low)
        xerr = None if none else [[max(0.0, r.accwow - r.ci_low)], [max(0.0, r.ci_high - r.accwow)]]
        ax.errorbar([r.accwow], [y], xerr=xerr, fmt=marker, color=colour, markersize=5, capsize=2, elinewidth=1.2,
                    markerfacecolor="white" if none else colour, clip_on=False)
    labels = [f"{r.evaluator} · {r.method}" if r.evaluator != SELF else f"self · {r.method}"
              for r in table.itertuples()]
    ax.set_yticks(range(len(table)), labels, fontsize=8)
    ax.set_ylim(max(len(table), 3) - 0.5, -0.5)
    ax.tick_params(axis="y", length=0)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    ax.grid(axis="x", color="0.93")
    level = f"{confidence * 100:g} % interval" if confidence else "interval"
    ax.set_xlabel(f"AccWoW on all pairs, pooled; whiskers: {level} (on questions)\nopen marker: no interval "
                  f"(fewer than {MIN_QUESTIONS} questions); dashed: random, 0.5", fontsize=8)  # one line overran
    n_datasets = _grid_datasets(table)
    fig.suptitle(f"Judge leaderboard: {n_datasets} dataset{'s' * (n_datasets != 1)}, every generator", fontsize=10)
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


def alignment_rows(table: pd.DataFrame, untrained: list[dict], line_break: str = " ") -> list[dict]:
    """Base vs aligned as the report shows it: one row per model, dataset, preference set and where it was
    trained; a metric's cell is base → aligned, then Δ with its interval after `line_break`."""
    from wow_core.evaluate import METRICS
    head = ["model", "dataset", "preference set", "trained on", "grid point", "pairs", "questions"]
    out = []
    keys = ["model", "dataset", "preference_set", "trained_on"]
    for (model, ds, pset, trained_on), part in table.groupby(keys, sort=False):
        by_metric = part.set_index("metric")
        first = part.iloc[0]
        cells = {}
        for m in METRICS:
            r = by_metric.loc[m]
            interval = (f"none: {first['n_questions']} questions" if pd.isna(r.low) and not pd.isna(r.delta)
                        else f"[{_signed(r.low)}, {_signed(r.high)}]")
            cells[ALIGNMENT_METRIC_NAMES[m]] = (f"{_fmt(r.base)} → {_fmt(r.aligned)}{line_break}"
                                                f"Δ {_signed(r.delta)} {interval}")
        where = f"{trained_on} (transfer)" if first["transfer"] else trained_on
        point = f"{first['grid_point']}" + ("" if first["selected_by"] == "single" else f" (by {first['selected_by']})")
        out.append(dict(zip(head, [model, ds, pset, where, point, int(first["n_pairs"]), int(first["n_questions"])]))
                   | cells)
    for u in untrained:
        out.append(dict(zip(head, [u["model"], u["trained_on"], u["preference_set"], u["trained_on"], "—",
                                   int(u["n_pairs"]), "—"]))
                   | {ALIGNMENT_METRIC_NAMES[m]: "not trained: fewer than 2 pairs" if i == 0 else ""
                      for i, m in enumerate(METRICS)})
    return out


def render_alignment_markdown(name: str, table: pd.DataFrame, runs: list[dict], untrained: list[dict],
                              diagrams: list[tuple[str, str, list[str]]]) -> str:
    """The alignment section: base vs aligned per preference set, training runs, reliability diagrams.

    `table`: `evaluate.alignment_table` rows with a `model` column; `runs`: model, preference_set,
    trained_on, grid_point, train, n_pairs, summary; `untrained`: sets with too few pairs; `diagrams`:
    (PNG file name, title, its panels) per reliability diagram."""
    out = [f"# Alignment report: {name}", "",
           "Base model vs its LoRA adapter trained on each preference set, on held-out questions that no "
           "preference set contains. Cells: base → aligned, Δ with its paired bootstrap 95 % interval (questions "
           f"resampled; none on fewer than {MIN_QUESTIONS} questions). *transfer* = evaluated on a dataset the "
           "adapter was not trained on. *grid point*: the one selected among a set's grid points "
           f"({SELECTION_TEXT['eval_loss']}; or {SELECTION_TEXT['proxy']}), or the set's only one.", ""]
    out += markdown_table(alignment_rows(table, untrained, line_break="<br>"))
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


INIT_TEXT = {"continue": "round r trains round r-1's adapter further on round r's pairs, against round r-1's "
                         "model as the DPO reference (Iterative RPO)",
             "base": "round r trains a new adapter of the base model on the pairs of rounds 1 to r together, "
                     "against the base model"}


def _with_interval(value, low, high, signed: bool = False) -> str:
    fmt = _signed if signed else _fmt
    return fmt(value) if pd.isna(low) else f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def rounds_rows(table: pd.DataFrame, line_break: str = "<br>") -> list[dict]:
    """One chain's rounds as the report shows them: a row per round, each metric's value with its
    interval and, from round 1 on, after `line_break`, its change from the base model with the paired one."""
    from wow_core.evaluate import METRICS
    out = []
    for rnd, part in table.groupby("round", sort=True):
        by_metric = part.set_index("metric")
        first = part.iloc[0]
        row = {"round": "0 (base)" if rnd == 0 else str(rnd), "pairs": "—" if rnd == 0 else int(first["n_pairs"]),
               "questions": int(first["n_questions"])}
        for m in METRICS:
            r = by_metric.loc[m]
            cell = _with_interval(r.value, r.low, r.high)
            if rnd:
                cell += f"{line_break}Δ {_with_interval(r.delta, r.delta_low, r.delta_high, signed=True)}"
            row[ALIGNMENT_METRIC_NAMES[m]] = cell
        out.append(row)
    return out


def render_rounds_markdown(name: str, table: pd.DataFrame, stopped: list[dict], png_name: str,
                           confidence: float) -> str:
    """The rounds report: per chain (model, dataset, preference set) a row per round, and the plot.

    `table`: `evaluate.rounds_table` rows with model, dataset, preference_set and init; `stopped`: chains
    that ended early (model, dataset, preference_set, round, reason)."""
    level = f"{confidence * 100:g} %"
    out = [f"# Iterative alignment: {name}", "",
           "Round 1 is the alignment's adapter of the preference set (its grid point chosen by eval loss); round "
           "r samples the training questions with round r-1's model, rebuilds the set from those answers with the "
           "same method, margin and judge, and trains the next adapter. Every round's model answers the same "
           f"held-out questions. Cells: the metric with its {level} percentile bootstrap interval over questions, "
           f"and from round 1 on its change Δ from the base model with the paired interval (none on fewer than "
           f"{MIN_QUESTIONS} questions). *pairs*: the round's training pairs.", ""]
    for (model, ds, pset, init), part in table.groupby(["model", "dataset", "preference_set", "init"], sort=False):
        out += [f"## {model} on {ds}: {pset}", "", f"Init: {init}: {INIT_TEXT[init]}.", ""]
        out += markdown_table(rounds_rows(part)) + [""]
    for s in stopped:
        out += [f"- {s['model']} on {s['dataset']} ({s['preference_set']}): no round {s['round']}: {s['reason']}"]
    out += ["", f"![Metrics per round, {level} intervals]({png_name})", ""]
    return "\n".join(out)


def plot_rounds(table: pd.DataFrame, confidence: float | None = None) -> bytes:
    """Each metric per round (0 = the base model), a line per chain, whiskers at the intervals."""
    from wow_core.evaluate import METRICS
    fig = Figure(figsize=(11, 3.2), layout="constrained", dpi=110)
    axes = fig.subplots(1, len(METRICS), squeeze=False)[0]
    chains = list(table.groupby(["model", "dataset", "preference_set", "init"], sort=False))
    for n, ((model, ds, pset, init), part) in enumerate(chains):
        offset = (n - (len(chains) - 1) / 2) * 0.06  # chains side by side, their whiskers apart
        for ax, m in zip(axes, METRICS):
            rows = part[part["metric"] == m].sort_values("round")
            x = rows["round"].to_numpy(dtype=float) + offset
            low = (rows["value"] - rows["low"]).clip(lower=0).fillna(0)
            high = (rows["high"] - rows["value"]).clip(lower=0).fillna(0)
            ax.errorbar(x, rows["value"], yerr=[low, high], marker="o", markersize=4, capsize=2, linewidth=1.2,
                        color=f"C{n % 10}", label=f"{model} · {ds} · {pset} ({init})")
    for ax, m in zip(axes, METRICS):
        ax.set_title(ALIGNMENT_METRIC_NAMES[m], fontsize=9)
        ax.set_xlabel("round (0: base model)", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(color="0.93")
    level = f"{confidence * 100:g} % intervals" if confidence else "intervals"
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncols=2)
    fig.suptitle(f"Iterative alignment, held-out questions; whiskers: {level} (bootstrap over questions)",
                 fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
