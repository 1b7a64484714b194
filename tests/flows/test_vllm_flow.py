"""The elicitation grid on the vLLM engine (the packaged model, float32) with the Prefect test harness:
two configurations of one model share one engine, every method reports, and a rerun asks nothing."""

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.elicit import elicit
from wow_core import engines
from wow_core.backends import get_backend
from wow_core.config import DatasetConfig, ExperimentConfig, JudgeConfig, SamplingConfig, VllmModel
from wow_core.store import Store
from independent import wow_pair_count

pytestmark = pytest.mark.slow


def vllm_grid(store: str) -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny-vllm", store=store,
        models=[VllmModel(name="plain", backend="vllm", dtype="float32"),
                VllmModel(name="stepwise", backend="vllm", dtype="float32", system_prompt="Work step by step.",
                          temperature=0.7)],
        generators=["plain", "stepwise"], evaluators=["plain"],
        datasets=[DatasetConfig(name="nlgraph_shortest_path", n_questions=3, seed=1)],
        sampling=SamplingConfig(n=4, max_new_tokens=32, shard_size=2, extraction_max_new_tokens=12),
        judge=JudgeConfig(max_new_tokens=12, score_k=[1, 2], max_pairs_per_question=2, reasoning=False),
    )




def test_elicitation_grid_on_the_vllm_engine(tmp_path, task_states):
    config = vllm_grid(str(tmp_path / "store"))
    with prefect_test_harness(server_startup_timeout=180):
        state = elicit(config, return_state=True)
        assert state.is_completed(), state
        plain, stepwise = (get_backend(config.model(name)) for name in ("plain", "stepwise"))
        assert stepwise.backend is plain  # the second configuration is a system prompt on the same backend
        assert [e.spec.model for e in engines.running_engines()].count(plain.spec.model) == 1
        asked = plain.requests_sent
        assert asked > 0
        again = elicit(config, return_state=True)
        assert again.result() == state.result() and plain.requests_sent == asked  # nothing asked again
        states = task_states(again)
    assert states and all(s == "Cached" for names in states.values() for s in names), states

    store = Store(config.store)
    uris = state.result()
    table = store.read_table(uris["parquet"])
    for generator in ("plain", "stepwise"):
        rows = table[table.generator == generator]
        assert set(rows.method) == {"length", "consistency", "logits", "pairwise", "pairwise_filtered",
                                    "score_k1", "score_k2"}
        samples = store.read_table(next(u for u in store.fs.glob(f"{config.store}/samples/*.{generator}-*.parquet")))
        assert len(samples) == 3 * 4
        assert (samples["mean_logprob"].notna() == (samples["n_tokens"] > 0)).all()
        length = rows[(rows.method == "length") & (rows.margin == 1.0)].n_pairs.item()
        assert length == wow_pair_count(samples)
