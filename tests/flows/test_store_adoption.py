"""A store written before keys left out where the store is keeps working: tests/data/store-493e848 is a
tiny elicitation's store exactly as wow wrote it at commit 493e848 (store `old-store`, relative, as its
config named it; Prefect's records left out). The first run on it adopts every artifact under its new
key, loads no model and gives the same report; the second is all cache hits."""
import shutil
from pathlib import Path

import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.elicit import elicit
from wow_core.backends import load_count
from wow_core.config import DatasetConfig, ExperimentConfig, JudgeConfig, SamplingConfig, TransformersModel
from wow_core.store import Store

pytestmark = pytest.mark.slow

OLD = Path(__file__).resolve().parents[1] / "data" / "store-493e848"


def old_config() -> ExperimentConfig:
    """The config the old store was made with. Its `dtype` was `auto`, which was float32 on the machine that
    made it; float32 is named here so that the keys are the same on a machine with native bfloat16."""
    return ExperimentConfig(
        name="old", store="old-store", models=[TransformersModel(name="smollm2-135m", dtype="float32")],
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=2, seed=3)],
        sampling=SamplingConfig(n=3, max_new_tokens=16, shard_size=1, extraction_max_new_tokens=8),
        judge=JudgeConfig(methods=["length", "logits", "pairwise"], max_new_tokens=8, max_pairs_per_question=1))


def files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_store_from_before_location_free_keys_is_adopted_not_recomputed(tmp_path, monkeypatch, task_states):
    monkeypatch.chdir(tmp_path)  # the old keys hold the store as the config named it: a relative folder
    shutil.copytree(OLD, tmp_path / "old-store")
    old_files = files(tmp_path / "old-store")
    [old_report] = [f for f in old_files if f.startswith("reports/old-") and f.endswith(".parquet")]
    config = old_config()
    with prefect_test_harness(server_startup_timeout=180):
        loads = load_count()
        state = elicit(config, return_state=True)
        assert state.is_completed() and load_count() == loads
        states = task_states(state)
        assert states and all(s == "Completed" for names in states.values() for s in names), states
        store = Store(config.store)
        uris = state.result()
        # The same report, under its new key; every old file is still there and has a new copy.
        pd.testing.assert_frame_equal(store.read_table(uris["parquet"]), store.read_table(old_report))
        # The new report names its plot by the new key, so the old files can be deleted.
        old_key, new_key = (u.removesuffix(".parquet").rsplit("-", 1)[1] for u in (old_report, uris["parquet"]))
        old_md = store.read_text(old_report.removesuffix(".parquet") + ".md")
        assert old_key in old_md and store.read_text(uris["md"]) == old_md.replace(old_key, new_key)
        new_files = [f for f in files(tmp_path / "old-store") if not f.startswith(("_prefect/", "_adopted/"))]
        assert set(old_files) < set(new_files) and len(new_files) == 2 * len(old_files), new_files
        again = elicit(config, return_state=True)
        assert again.result() == uris and load_count() == loads
        states = task_states(again)
        assert all(s == "Cached" for names in states.values() for s in names), states
