"""The elicitation flow end to end on the real packaged model, with the Prefect test harness:
report contents, a fully cached rerun, and a config change that redoes only what depends on it."""
import re

import pytest
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

import wow_core.sample as sample_module
from flows.elicit import elicit
from wow_core.backends import get_backend
from wow_core.config import DatasetConfig, ExperimentConfig, JudgeConfig, SamplingConfig
from wow_core.store import Store
from independent import wow_pair_count

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def tiny_config(store: str, **judge) -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny", store=store,
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=3, seed=1)],
        sampling=SamplingConfig(n=4, max_new_tokens=32, shard_size=2, extraction_max_new_tokens=12),
        judge=JudgeConfig(max_new_tokens=12, score_k=[1, 2], **{"max_pairs_per_question": 2, **judge}),
    )


@pytest.fixture(scope="module")
def first_run(harness, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store"))
    config = tiny_config(store)
    state = elicit(config, return_state=True)
    return config, state


def test_report_has_every_method_and_margin(first_run):
    config, state = first_run
    assert state.is_completed()
    uris = state.result()
    store = Store(config.store)
    table = store.read_table(uris["parquet"])
    scored = ["length", "consistency", "logits", "score_k1", "score_k2"]
    for method in scored:
        assert sorted(table[table.method == method].margin) == [0.1, 0.5, 1.0], method
    for method in ["pairwise", "pairwise_filtered"]:
        assert table[table.method == method].margin.tolist() == [1.0], method
    samples = store.read_table(next(u for u in store.fs.glob(f"{config.store}/samples/*.parquet")))
    assert len(samples) == 3 * 4 and set(samples.extraction_method.dropna()) <= {"conclusion", "direct"}
    # The pair count of a method that scores every answer is the number of WoW pairs, counted independently.
    n_length = table[(table.method == "length") & (table.margin == 1.0)].n_pairs.item()
    assert n_length == wow_pair_count(samples)
    markdown = store.read_text(uris["md"])
    assert "Random baseline: 0.500" in markdown and "pairwise_filtered" in markdown
    # One plot per dataset, linked on its own line under the dataset's heading.
    assert len(uris["png"]) == len(config.datasets) == 1
    assert f"### nlgraph_shortest_path\n\n![AccWoW on nlgraph_shortest_path by method, evaluator and margin]" \
           f"({uris['png'][0].rsplit('/', 1)[-1]})\n" in markdown
    assert store.read_bytes(uris["png"][0]).startswith(b"\x89PNG")
    # Three questions: every cell says so instead of printing an interval.
    assert (table.n_questions <= 3).all() and table.ci_low.isna().all()
    assert re.search(r"\| none: [123] questions? \|", markdown) and "[0." not in markdown.split("## Samples")[0]
    # The judge table: the pairwise judge's verdicts recounted from its judgments.
    judges = store.read_table(uris["judges"])
    [pairwise] = judges[judges.method == "pairwise"].to_dict("records")
    verdicts = store.read_table(next(u for u in store.fs.glob(f"{config.store}/judgments/*pairwise*.parquet")))
    parsed = verdicts[verdicts.preferred.notna()]
    assert pairwise["verdicts"] == len(verdicts) and pairwise["first_position_n"] == len(parsed)
    if len(parsed):
        assert pairwise["first_position"] == pytest.approx((parsed.preferred == parsed["first"]).mean())
    assert "| parse rate | position consistency | first position | kappa |" in markdown


def test_what_the_prefect_ui_shows(first_run):
    """Artifacts keyed by config and flow, the plot inside the report, tables as the report formats them,
    progress of every model-bound task and of the run, task runs named by what they do."""
    from prefect import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter,
                                                FlowRunFilterId)
    config, state = first_run
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
        names = sorted(r.name for r in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))))
        flow_run = client.read_flow_run(run_id)
    assert flow_run.name == "elicit · tiny"
    keyed = {a.key: a for a in artifacts if a.key}
    assert set(keyed) == {"tiny-elicit-accwow-report", "tiny-elicit-accwow-table", "tiny-elicit-judge-table"}
    report = keyed["tiny-elicit-accwow-report"].data
    # The plot is in the markdown itself: the browser cannot fetch a file beside the report.
    assert report.count("](data:image/png;base64,iVBORw0KGgo") == 1 and not re.search(r"\]\([^)]+\.png\)", report)
    assert keyed["tiny-elicit-accwow-report"].description.endswith(f"on `{__import__('socket').gethostname()}`")
    import json
    rows = json.loads(keyed["tiny-elicit-accwow-table"].data)
    table = Store(config.store).read_table(state.result()["parquet"])
    assert len(rows) == len(table) and list(rows[0]) == ["dataset", "generator", "evaluator", "method", "margin",
                                                         "AccWoW", "pairs", "questions", "95 % interval"]
    first = table.iloc[0]
    assert rows[0]["AccWoW"] == (f"{first.accwow:.3f}" if first.accwow == first.accwow else "—")
    judges = json.loads(keyed["tiny-elicit-judge-table"].data)
    assert {j["method"] for j in judges} == {"pairwise", "score_k1", "score_k2"}
    assert all(re.fullmatch(r"\d\.\d\d \(none: \d questions?\) of \d+|—", j["parse rate"]) for j in judges), judges
    # Progress: one artifact per model-bound task run (2 shards, 3 judges), all at 100 %, and the run's own.
    progress = [a for a in artifacts if a.type == "progress"]
    units = [a for a in progress if a.task_run_id is not None]
    assert len(units) == 5 and all(a.data == 100 for a in units), [(a.description, a.data) for a in units]
    assert any(": extraction turns 8 of 8 (100%)" in a.description for a in units), [a.description for a in units]
    [run] = [a for a in progress if a.task_run_id is None]
    assert run.data == 100 and run.description == "Model-bound units done: sample 2 of 2 · judge 3 of 3"
    assert "sample · nlgraph_shortest_path · smollm2-135m · questions 0-2" in names
    assert "judge score k=2 · nlgraph_shortest_path · smollm2-135m" in names
    assert "pairs · nlgraph_shortest_path.smollm2-135m · length" in names, names


def test_rerun_is_fully_cached_and_calls_no_model(first_run, task_states):
    config, state = first_run
    backend = get_backend(config.model("smollm2-135m"))
    before = backend.sequences_generated
    again = elicit(config, return_state=True)
    assert again.result() == state.result()
    assert backend.sequences_generated == before
    states = task_states(again)
    assert states and all(s == "Cached" for names in states.values() for s in names), states


def test_rerun_from_another_prefect_home_is_fully_cached(first_run, task_states, tmp_path):
    # Another worker or user: its own $PREFECT_HOME, so its own default result storage. The store's
    # records must be whole: a record whose result lay under the first run's home failed every task.
    config, state = first_run
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path / "other-home" / "storage"}):
        again = elicit(config, return_state=True)
    assert again.is_completed() and again.result() == state.result()
    states = task_states(again)
    assert states and all(s == "Cached" for names in states.values() for s in names), states
    assert not (tmp_path / "other-home").exists()  # nothing was written outside the store


def test_changed_field_redoes_only_what_depends_on_it(first_run, task_states):
    config, _ = first_run
    changed = tiny_config(config.store, max_pairs_per_question=1)
    states = task_states(elicit(changed, return_state=True))
    for name in ["make_questions", "sample_shard", "join_samples", "judge_score"]:
        assert set(states[name]) == {"Cached"}, (name, states[name])
    assert states["judge_pairwise"] == ["Completed"]
    assert states["build_report"] == ["Completed"]
    # Pairs of the self signals and the score judge are reused; the pairwise ones are new.
    assert states["method_pairs"].count("Completed") == 2


def test_crash_in_one_shard_loses_only_that_shard(harness, tmp_path, monkeypatch, task_states):
    config = tiny_config(str(tmp_path / "store"))
    real = sample_module.sample_answers

    def dies_on_second_shard(questions, *args, **kwargs):
        if questions[0].id.endswith("/2"):
            raise RuntimeError("worker lost")
        return real(questions, *args, **kwargs)

    monkeypatch.setattr(sample_module, "sample_answers", dies_on_second_shard)
    crashed = elicit(config, return_state=True)
    assert crashed.is_failed()
    shards = Store(config.store).fs.glob(f"{config.store}/samples/shards/*.parquet")
    assert len(shards) == 1  # the finished shard is kept

    monkeypatch.setattr(sample_module, "sample_answers", real)
    states = task_states(elicit(config, return_state=True))
    assert sorted(states["sample_shard"]) == ["Cached", "Completed"]


def test_score_judges_of_5_and_10_answers_under_the_papers_protocol(harness, tmp_path):
    """Ten answers to one question, every one scored (the paper's protocol): the packaged model is
    asked prompts of 5 and of 10 answers, and each verdict lands on its answer and position."""
    config = ExperimentConfig(
        name="tiny-k", store=str(tmp_path / "store"),
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=1, seed=4)],
        sampling=SamplingConfig(n=10, max_new_tokens=16, shard_size=1, extraction_max_new_tokens=8),
        judge=JudgeConfig(methods=["length", "score"], score_k=[5, 10], max_new_tokens=40, reasoning=False,
                          protocol="paper"))
    state = elicit(config, return_state=True)
    assert state.is_completed(), state
    store, uris = Store(config.store), state.result()
    for k in (5, 10):
        [uri] = store.fs.glob(f"{config.store}/judgments/*score_k{k}*.parquet")
        scores = store.read_table(uri).sort_values("sample_idx")
        assert scores.sample_idx.tolist() == list(range(10)) and (scores.k == k).all()
        assert scores.position.tolist() == [i % k + 1 for i in range(10)]
        assert scores.group.nunique() == 10 // k
        # A prompt's scores all parsed or none did.
        assert all(g.score.notna().all() or g.score.isna().all() for _, g in scores.groupby("group"))
    judges = store.read_table(uris["judges"]).set_index("method")
    assert set(judges.index) == {"score_k5", "score_k10"} and (judges.verdicts == 10).all()
    table = store.read_table(uris["parquet"])
    assert {"score_k5", "score_k10", "length"} <= set(table.method)


def test_a_config_from_the_form_that_breaks_a_cross_field_rule_fails_the_run_at_once(harness, tmp_path):
    # The UI's form checks each field, not the rules between them: the flow checks them first thing
    # and names the rule as `wow validate` does, without the whole config in the message.
    config = tiny_config(str(tmp_path / "store")).model_dump(mode="json") | {"generators": ["nope"]}
    state = elicit(config=config, return_state=True)
    assert state.is_failed()
    assert state.message == ("Flow run encountered an exception: ConfigError: flow parameter 'config': field "
                             "'(top level)': Value error, `generators` names ['nope'] not in `models` "
                             "(['smollm2-135m'])")
    assert not (tmp_path / "store").exists()
