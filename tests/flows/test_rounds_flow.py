"""Iterative alignment on the real packaged model: round 2 samples the training questions with round 1's
adapted model, trains round 1's adapter further on pairs from those answers only, and answers the same
held-out questions; a rerun with one more round trains only that round; `init: base` trains a new adapter
on the pairs of every round so far."""
import json

import pytest
from prefect.testing.utilities import prefect_test_harness
from servers import run_artifacts

import wow_core.train as train_module
from flows.grid import grid
from wow_core.config import (AlignmentConfig, DatasetConfig, ExperimentConfig, JudgeConfig, PreferenceSetConfig,
                             RoundsConfig, SamplingConfig, TrainConfig)
from wow_core.preference_dataset import CARD, dataset_uri
from wow_core.store import Store

pytestmark = pytest.mark.slow

FIRST = "smollm2-135m+oracle.self+g0"  # round 1's adapted model (the set's only grid point)


@pytest.fixture(scope="module")
def harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def rounds_grid(store: str, n: int, init: str = "continue") -> ExperimentConfig:
    return ExperimentConfig(
        name="rounds", store=store,
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=10, seed=1)],  # 5 held out: intervals
        sampling=SamplingConfig(n=4, max_new_tokens=24, shard_size=5, extraction_max_new_tokens=10),
        judge=JudgeConfig(methods=["logits"]),
        alignment=AlignmentConfig(
            heldout_fraction=0.5, preference_sets=[PreferenceSetConfig(method="oracle")],
            max_pairs=8,  # 2 training steps a round
            train=TrainConfig(epochs=1, batch_size=4, max_length=400, learning_rate=5e-4),
            # intervals resample questions
            eval=SamplingConfig(n=1, max_new_tokens=24, shard_size=5, extraction_max_new_tokens=10),
            bootstrap=100, rounds=RoundsConfig(n=n, init=init)))


def run_recording_trainings(config, monkeypatch) -> tuple:
    """The grid's state, and each training's (pairs, init_adapter) as train_adapter got them."""
    trainings, real = [], train_module.train_adapter

    def recorded(base_path, pairs, *args, **kwargs):
        trainings.append((pairs.copy(), kwargs.get("init_adapter")))
        return real(base_path, pairs, *args, **kwargs)
    monkeypatch.setattr(train_module, "train_adapter", recorded)
    state = grid(config, return_state=True)
    assert state.is_completed()
    return state, trainings


@pytest.fixture(scope="module")
def two_rounds(harness, tmp_path_factory):
    monkeypatch = pytest.MonkeyPatch()
    config = rounds_grid(str(tmp_path_factory.mktemp("store")), n=2)
    try:
        state, trainings = run_recording_trainings(config, monkeypatch)
    finally:
        monkeypatch.undo()
    return config, state, trainings


def samples_of(store: Store, config, model: str, heldout: bool):
    """The joined answers of `model` on the training (or held-out) questions."""
    heldout_ids = set(store.read_table(store.fs.glob(f"{config.store}/questions/heldout/*.parquet")[0]).question_id)
    tables = [store.read_table(u)
              for u in store.fs.glob(f"{config.store}/samples/nlgraph_shortest_path.{model}-*.parquet")]
    [table] = [t for t in tables if (set(t.question_id) <= heldout_ids) == heldout]
    return table


def test_round_two_samples_with_round_one_and_trains_it_further(two_rounds):
    config, state, trainings = two_rounds
    store = Store(config.store)
    # Two trainings: round 1 (the alignment's own adapter, from the base model) and round 2, from round 1's.
    [(_, first_init), (round2_pairs, second_init)] = trainings
    round1_adapter = [a for a in store.fs.glob(f"{config.store}/adapters/*") if ".oracle.self.g0-" in a]
    assert first_init is None and second_init is not None and second_init.rstrip("/").endswith(
        round1_adapter[0].rstrip("/").rsplit("/", 1)[-1])
    # Round 1's model answered the training questions (none held out), and round 2's pairs are its answers.
    train_answers = samples_of(store, config, FIRST, heldout=False)
    heldout_ids = set(store.read_table(store.fs.glob(f"{config.store}/questions/heldout/*.parquet")[0]).question_id)
    assert len(set(train_answers.question_id)) == 5 and not set(train_answers.question_id) & heldout_ids
    assert set(round2_pairs.chosen) | set(round2_pairs.rejected) <= set(train_answers.answer)
    base_train_answers = samples_of(store, config, "smollm2-135m", heldout=False)
    assert set(train_answers.answer) != set(base_train_answers.answer)  # a new model and seed: new answers
    # Each pair's chosen answer is less wrong by the proxy (oracle) than its rejected one.
    proxy = dict(zip(train_answers.answer, train_answers.proxy))
    assert all(proxy[c] > proxy[r] for c, r in zip(round2_pairs.chosen, round2_pairs.rejected))


def test_rounds_report_agrees_with_the_alignment_report(two_rounds):
    config, state, _ = two_rounds
    store = Store(config.store)
    uris = state.result()["alignment"]
    rounds = store.read_table(uris["rounds"]["parquet"])
    assert sorted(set(rounds["round"])) == [0, 1, 2]
    assert set(rounds.metric) == {"proxy_score", "wrong_only_proxy", "accuracy", "ece"}
    # Round 0 is the base model and round 1 the alignment's adapter: the alignment report's own numbers.
    alignment = store.read_table(uris["parquet"]).set_index("metric")
    for m, row in alignment.iterrows():
        r0, r1 = (rounds[(rounds["round"] == k) & (rounds.metric == m)].iloc[0] for k in (0, 1))
        assert r0.value == pytest.approx(row.base, nan_ok=True) and r1.value == pytest.approx(row.aligned, nan_ok=True)
        assert r1.delta == pytest.approx(row.delta, nan_ok=True)
    # Round 2 on the same held-out questions: its proxy score is the mean proxy of its answers there.
    r2 = rounds[(rounds["round"] == 2) & (rounds.metric == "proxy_score")].iloc[0]
    answers = samples_of(store, config, "smollm2-135m+oracle.self+r2-continue", heldout=True)
    assert r2.n_questions == 5 and r2.value == pytest.approx(answers.proxy.fillna(0).mean())
    assert r2.low <= r2.value <= r2.high
    markdown = store.read_text(uris["rounds"]["md"])
    assert "# Iterative alignment: rounds" in markdown and "| 0 (base) |" in markdown and "Init: continue" in markdown
    assert store.read_bytes(uris["rounds"]["png"]).startswith(b"\x89PNG")


def test_the_ui_shows_the_rounds(two_rounds):
    config, state, _ = two_rounds
    keyed = {a.key: a for a in run_artifacts(state) if a.key}
    assert keyed["rounds-grid-rounds-report"].data.count("](data:image/png;base64,") == 1
    rows = json.loads(keyed["rounds-grid-rounds-table"].data)
    assert [r["round"] for r in rows] == ["0 (base)", "1", "2"] and "Δ" in rows[2]["accuracy (more correct)"]


def test_the_store_moved_to_an_object_store_is_all_cache_hits(two_rounds, tmp_path, monkeypatch, task_states):
    """A finished grid's store copied from a local folder to S3 (a real SeaweedFS server): the rerun there
    finds every artifact and Prefect record, loads no model and writes only its own run's records."""
    from s3_endpoint import KEY_ID, SECRET, S3Server

    from wow_core.backends import load_count
    config, state, _ = two_rounds
    server = S3Server(tmp_path)
    try:
        server.storage.mkdir("moved")
        server.storage.put(config.store.rstrip("/") + "/", "moved/grid/", recursive=True)
        before = set(server.storage.find("moved/grid"))
        for name, value in {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": KEY_ID,
                            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        loads = load_count()
        moved = grid(rounds_grid("s3://moved/grid", n=2), return_state=True)
        assert moved.is_completed() and moved.result() == state.result()  # the same URIs: relative to the store
        assert load_count() == loads
        states = task_states(moved)
        assert states and all(s == "Cached" for names in states.values() for s in names), states
        written = set(server.storage.find("moved/grid")) - before
        print(f"moved store: {len(before)} files copied, {sum(map(len, states.values()))} task runs all "
              f"Cached, {len(written)} files written by the rerun")
        assert all(f.startswith("moved/grid/_prefect/") for f in written), sorted(written)
    finally:
        server.close()


def test_one_more_round_runs_only_that_round(two_rounds, monkeypatch, task_states):
    config, first, _ = two_rounds
    store = Store(config.store)
    before = store.read_table(first.result()["alignment"]["rounds"]["parquet"])
    state, trainings = run_recording_trainings(rounds_grid(config.store, n=3), monkeypatch)
    [(_, init)] = trainings  # round 3 only, from round 2's adapter
    round2 = [a for a in store.fs.glob(f"{config.store}/adapters/*") if ".oracle.self.r2-continue.g0-" in a]
    assert init.rstrip("/").endswith(round2[0].rsplit("/", 1)[-1])
    states = task_states(state)
    assert states["train_grid_point"].count("Cached") == 2, states["train_grid_point"]
    after = store.read_table(state.result()["alignment"]["rounds"]["parquet"])
    assert sorted(set(after["round"])) == [0, 1, 2, 3]
    assert after[after["round"] < 3].reset_index(drop=True).equals(before)


def test_init_base_trains_a_new_adapter_on_every_rounds_pairs(two_rounds, monkeypatch):
    config, *_ = two_rounds
    store = Store(config.store)
    state, trainings = run_recording_trainings(rounds_grid(config.store, n=2, init="base"), monkeypatch)
    [(pairs, init)] = trainings  # round 1 and round 1's model's answers are found in the store
    assert init is None

    def one_set(part: str):
        [uri] = [u for u in store.fs.glob(f"{config.store}/preference_sets/*.parquet") if part in u.rsplit("/", 1)[-1]]
        card = store.read_text(f"{dataset_uri(uri)}/{CARD}")
        return store.read_table(uri), card
    (round1, _), (round2, continued), (based, card) = (
        one_set(f".oracle.self{part}-") for part in ("", ".r2-continue", ".r2-base"))
    # Round 2 from the base model draws its pairs from round 1's answers and round 1's model's together.
    key = ["chosen", "rejected"]
    assert based[key].equals(pairs[key].reset_index(drop=True))
    assert (set(map(tuple, pairs[key].values))
            <= set(map(tuple, round1[key].values)) | set(map(tuple, round2[key].values)))
    assert len(pairs) == min(8, len(round1) + len(round2))
    assert "`smollm2-135m`, `smollm2-135m+oracle.self+g0`" in card
    assert "Generators (whose sampled answers are paired): `smollm2-135m+oracle.self+g0` (" in continued
    assert "Init: base" in store.read_text(state.result()["alignment"]["rounds"]["md"])
