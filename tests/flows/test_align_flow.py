"""The grid flow (elicitation + alignment as one DAG) on the real packaged model: the alignment report,
evaluation only on held-out questions, a cached rerun that trains nothing, and one without Prefect's records
that only looks in the store."""
import json
import logging

import pytest
from prefect.testing.utilities import prefect_test_harness
from servers import run_artifacts

import wow_core.train as train_module
from flows.grid import grid
from wow_core.backends import get_backend
from wow_core.config import (AlignmentConfig, DatasetConfig, ExperimentConfig, JudgeConfig, PreferenceSetConfig,
                             SamplingConfig, TrainConfig)
from wow_core.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def tiny_grid(store: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny", store=store,
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=4, seed=1),
                  DatasetConfig(name="nlgraph_max_flow", n_questions=4, seed=1)],
        sampling=SamplingConfig(n=4, max_new_tokens=24, shard_size=4, extraction_max_new_tokens=10),
        judge=JudgeConfig(methods=["logits", "score"], max_new_tokens=8, score_k=[1]),
        alignment=AlignmentConfig(
            heldout_fraction=0.5,  # both datasets, each adapter also evaluated on the other (transfer)
            preference_sets=[PreferenceSetConfig(method="oracle")],
            train=TrainConfig(epochs=1, batch_size=4, max_length=400, learning_rate=1e-4),
            grid={"learning_rate": [1e-4, 5e-4]},  # two grid points per set: the paper's selection picks one
            eval=SamplingConfig(n=2, max_new_tokens=24, shard_size=2, extraction_max_new_tokens=10),
            bootstrap=100),
    )


class Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(scope="module")
def first_run(harness, tmp_path_factory):
    """The tiny grid's first run, and the task runs' log records at INFO (the suite logs WARNING and up)."""
    config = tiny_grid(str(tmp_path_factory.mktemp("store")))
    logger, handler = logging.getLogger("prefect.task_runs"), Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        state = grid(config, return_state=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return config, state, handler.records


def test_alignment_report_and_held_out_evaluation(first_run):
    config, state, _ = first_run
    assert state.is_completed()
    uris = state.result()["alignment"]
    store = Store(config.store)
    table = store.read_table(uris["parquet"])
    trained = store.fs.glob(f"{config.store}/preference_sets/*.parquet")
    sets = {store.read_table(u)["method"].iloc[0] if len(store.read_table(u)) else None for u in trained}
    assert len(trained) == 2 and sets == {"oracle"}  # one set on each of two datasets
    # Every trained set is reported in-task and, transfer on by default, on the other dataset.
    datasets = {"nlgraph_shortest_path", "nlgraph_max_flow"}
    for (pset, trained_on), rows in table.groupby(["preference_set", "trained_on"]):
        assert set(rows.metric) == {"proxy_score", "wrong_only_proxy", "accuracy", "ece"}
        [other] = datasets - {trained_on}
        assert set(zip(rows.dataset, rows.transfer)) == {(trained_on, False), (other, True)}, (pset, trained_on)
    # Evaluation never sees a question that any preference set holds.
    pair_questions = set().union(*(set(store.read_table(u).question_id) for u in trained))
    heldout = store.fs.glob(f"{config.store}/questions/heldout/*.parquet")
    heldout_ids = set().union(*(set(store.read_table(u).question_id) for u in heldout))
    assert pair_questions and not pair_questions & heldout_ids
    adapted = [u for u in store.fs.glob(f"{config.store}/samples/*.parquet") if "+" in u.rsplit("/", 1)[-1]]
    assert adapted and all(set(store.read_table(u).question_id) <= heldout_ids for u in adapted)
    markdown = store.read_text(uris["md"])
    assert "Alignment report: tiny" in markdown and "oracle.self" in markdown and "reliability" in markdown
    assert all(store.read_bytes(p).startswith(b"\x89PNG") for p in uris["png"])
    # Every adapter evaluated on a dataset is a panel of its diagram, the ones trained elsewhere included.
    for ds in ("nlgraph_shortest_path", "nlgraph_max_flow"):
        rows = table[table.dataset == ds][["preference_set", "trained_on"]].drop_duplicates()
        want = ["base"] + [p if t == ds else f"{p} (trained on {t})" for p, t in rows.itertuples(index=False)]
        assert f"![reliability, smollm2-135m on {ds}: {', '.join(want)}](" in markdown, (ds, want)
    assert (table.transfer & table.duplicated(["dataset", "preference_set"], keep=False)).any()  # one set, two adapters
    adapters = store.fs.glob(f"{config.store}/adapters/*/adapter_model.safetensors")
    assert len(adapters) == 2 * len(table[["preference_set", "trained_on"]].drop_duplicates())  # 2 grid points
    # Each set's reported grid point is the one with the lowest eval loss (read from its training log),
    # and every held-out question is reported: none is spent on selecting.
    assert set(table.selected_by) == {"eval_loss"}
    for trained_on, rows in table.groupby("trained_on"):
        loss = {g: json.loads(store.read_text(log))["summary"]["eval_loss"] for g in (0, 1)
                for log in store.fs.glob(f"{config.store}/adapters/{trained_on}.smollm2-135m.oracle.self.g{g}-*/"
                                         "training_log.json")}
        assert set(rows.grid_point) == {min(loss, key=loss.get)}, loss
    n_heldout = {store.read_table(u).dataset.iloc[0]: len(store.read_table(u)) for u in heldout}
    assert all(r.n_questions == n_heldout[r.dataset] for r in table.itertuples())



def test_the_ui_shows_the_diagrams_and_the_trainings_progress(first_run):
    config, state, _ = first_run
    artifacts = run_artifacts(state)
    keyed = {a.key: a for a in artifacts if a.key}
    assert {"tiny-grid-accwow-report", "tiny-grid-alignment-report", "tiny-grid-alignment-table"} <= set(keyed)
    pngs = state.result()["alignment"]["png"]
    assert keyed["tiny-grid-alignment-report"].data.count("](data:image/png;base64,") == len(pngs) == 2
    rows = json.loads(keyed["tiny-grid-alignment-table"].data)
    assert rows and all("→" in r["accuracy (more correct)"] and "Δ" in r["accuracy (more correct)"] for r in rows)
    trainings = [a for a in artifacts if a.type == "progress" and a.description.startswith("train · ")]
    # One per adapter trained (a set with fewer than 2 pairs is not trained and reports nothing).
    adapters = Store(config.store).fs.glob(f"{config.store}/adapters/*/adapter_model.safetensors")
    assert len(trainings) == len(adapters) >= 2
    assert all(a.data == 100 and "training steps" in a.description for a in trainings), trainings


def test_training_logs_its_records_and_no_bytecode(first_run):
    # `datasets` hashes the trainer's functions with dill, which disassembles them into a redirected
    # stdout; with the flow's log_prints, Prefect's print patch logged each bytecode line (~1000 a training).
    *_, records = first_run
    training = [r.getMessage() for r in records if getattr(r, "task_run_name", "").startswith("train · ")]
    assert any("'loss':" in m for m in training) and any("'eval_loss':" in m for m in training)
    assert not [m for m in training if "LOAD_" in m or "RETURN_VALUE" in m]


def rerun_without_models(first_run, monkeypatch, task_states) -> dict[str, list[str]]:
    """The grid again, failing on any training or sampling: task name -> states."""
    config, state, _ = first_run

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained")

    monkeypatch.setattr(train_module, "train_adapter", no_training)
    backend = get_backend(config.model("smollm2-135m"))
    before = backend.sequences_generated
    again = grid(config, return_state=True)
    assert again.result() == state.result()
    assert backend.sequences_generated == before
    return task_states(again)


def test_cached_rerun_trains_and_samples_nothing(first_run, monkeypatch, task_states):
    states = rerun_without_models(first_run, monkeypatch, task_states)
    assert states["train_grid_point"] and all(s == "Cached" for names in states.values() for s in names), states


def test_lost_cache_records_cost_store_lookups_only(first_run, monkeypatch, task_states):
    # Without Prefect's records every task body runs, finds its artifact in the store and returns the
    # same URIs (reports and plots included) without loading a model.
    config = first_run[0]
    Store(config.store).fs.rm(f"{config.store}/_prefect", recursive=True)
    states = rerun_without_models(first_run, monkeypatch, task_states)
    assert states["train_grid_point"] and all(s == "Completed" for names in states.values() for s in names), states
