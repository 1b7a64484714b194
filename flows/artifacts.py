"""What a run shows in the Prefect UI: its reports as artifacts keyed by config and flow, with their plots
inline and their tables formatted as the markdown report formats them.

Keys carry the config's name and the flow's, so a small test run never replaces the nightly grid's report
as "the latest" under a key. Plots are embedded as data: URIs: the report file's image links are names
beside it in the store, which the UI's browser cannot fetch (a local folder on a worker, or a bucket)."""
import base64
import re
import socket

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from wow_core import budget, report
from wow_core.store import Store

# An image link of a report file: `![alt](name.png)`, the name relative to the report's folder.
IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^()\s:]+\.png)\)")


def slug(text: str) -> str:
    """Prefect's artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def artifact_key(config_name: str, what: str) -> str:
    """`<config>-<flow>-<what>`, e.g. `paper-grid-accwow-report`; the flow is the running one's."""
    return f"{slug(config_name)}-{slug(flow_run.flow_name or 'flow')}-{what}"


def where(store: Store, uri: str) -> str:
    """A store URI as a reader can find it: in an object store as a link, in a local folder as a path
    with its machine (a worker's folder is not on the machine that shows the UI)."""
    uri = store.url_of(uri)
    if "://" in uri and not uri.startswith("file://"):
        return f"[{uri}]({uri})"
    return f"`{uri.removeprefix('file://')}` on `{socket.gethostname()}`"


def inline_images(markdown: str, store: Store, md_uri: str) -> str:
    """The report's image links replaced by the PNGs themselves, read from beside the report in the store."""
    folder = md_uri.rsplit("/", 1)[0]

    def embed(match: re.Match) -> str:
        data = base64.b64encode(store.read_bytes(f"{folder}/{match.group(2)}")).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"
    return IMAGE_LINK.sub(embed, markdown)


def _table(rows: list[dict]) -> list[dict]:
    """Rows as Prefect's table artifact takes them (no NaN: JSON has none)."""
    return [{k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()} for r in rows]


def precision_preface(precision: list[str]) -> str:
    """What precision the run's models ran in and why, above its reports (markdown)."""
    if not precision:
        return ""
    return "**Precision on this machine** (`dtype`; `wow doctor` tells more):\n\n" + \
        "".join(f"- {note}\n" for note in precision) + "\n"


def _publish_report(store: Store, md_uri: str, key: str, what: str, precision: list[str] = ()) -> None:
    """A markdown report as an artifact, its plots inline, its description saying where the file lies;
    the run's precision notes above it."""
    markdown = precision_preface(list(precision)) + inline_images(store.read_text(md_uri), store, md_uri)
    create_markdown_artifact(key=key, markdown=markdown, description=f"{what}: {where(store, md_uri)}")


def publish_elicitation(store: Store, uris: dict, config_name: str, confidence: float,
                        precision: list[str] = ()) -> None:
    """The AccWoW report (markdown, plots inline; the models' precision above it), its table and the
    judge reliability table."""
    _publish_report(store, uris["md"], artifact_key(config_name, "accwow-report"), f"AccWoW report of '{config_name}'",
                    precision)
    create_table_artifact(key=artifact_key(config_name, "accwow-table"),
                          table=_table(report.accwow_rows(store.read_table(uris["parquet"]), confidence)),
                          description=f"AccWoW per method and margin of '{config_name}': "
                                      f"{where(store, uris['parquet'])}")
    create_table_artifact(key=artifact_key(config_name, "judge-table"),
                          table=_table(report.judge_rows(store.read_table(uris["judges"]).to_dict("records"))),
                          description=f"Judge reliability of '{config_name}': {where(store, uris['judges'])}")
    if "leaderboard" in uris:
        publish_leaderboard(store, uris["leaderboard"], config_name, confidence)
    if "budget" in uris:
        publish_budget(store, uris["budget"], config_name)


def publish_budget(store: Store, uris: dict, config_name: str) -> None:
    """Budget-aware judging: its markdown (the curves inline) and its table."""
    _publish_report(store, uris["md"], artifact_key(config_name, "judge-budget-report"),
                    f"Budget-aware judging of '{config_name}'")
    create_table_artifact(key=artifact_key(config_name, "judge-budget"),
                          table=_table(budget.budget_rows_shown(store.read_table(uris["parquet"]))),
                          description=f"AccWoW and preference-set size against judge calls, per pick, of "
                                      f"'{config_name}': {where(store, uris['parquet'])}")


def publish_leaderboard(store: Store, uris: dict, config_name: str, confidence: float) -> None:
    """The judge leaderboard: its markdown (plot inline) and its table, as the markdown formats it."""
    _publish_report(store, uris["md"], artifact_key(config_name, "judge-leaderboard-report"),
                    f"Judge leaderboard of '{config_name}'")
    create_table_artifact(key=artifact_key(config_name, "judge-leaderboard"),
                          table=_table(report.leaderboard_rows(store.read_table(uris["parquet"]), confidence)),
                          description=f"Judge leaderboard of '{config_name}': evaluators and methods ranked by "
                                      f"AccWoW over every dataset: {where(store, uris['parquet'])}")


def publish_alignment(store: Store, uris: dict, config_name: str, precision: list[str] = ()) -> None:
    """The alignment report (markdown, reliability diagrams inline; the models' precision above it) and
    its base-vs-aligned table; the iterative rounds' report and table when there are rounds."""
    _publish_report(store, uris["md"], artifact_key(config_name, "alignment-report"),
                    f"Alignment report of '{config_name}'", precision)
    # Sets too small to train are rows of the markdown only: the table holds what was evaluated.
    create_table_artifact(key=artifact_key(config_name, "alignment-table"),
                          table=_table(report.alignment_rows(store.read_table(uris["parquet"]), [])),
                          description=f"Base vs aligned on held-out questions of '{config_name}': "
                                      f"{where(store, uris['parquet'])}")
    if "rounds" in uris:
        publish_rounds(store, uris["rounds"], config_name)


def publish_rounds(store: Store, uris: dict, config_name: str) -> None:
    """The iterative-alignment report (its plot inline) and a table of its rounds."""
    _publish_report(store, uris["md"], artifact_key(config_name, "rounds-report"),
                    f"Iterative alignment of '{config_name}'")
    table = store.read_table(uris["parquet"])
    rows = [{"model": m, "dataset": d, "preference set": p, "init": i, **row}
            for (m, d, p, i), part in table.groupby(["model", "dataset", "preference_set", "init"], sort=False)
            for row in report.rounds_rows(part, line_break=" ")]
    create_table_artifact(key=artifact_key(config_name, "rounds-table"), table=_table(rows),
                          description=f"Metrics per round of '{config_name}' on held-out questions: "
                                      f"{where(store, uris['parquet'])}")
