"""Cache keys: which settings reach a stage's key and which do not."""
from wow_core.config import DatasetConfig, JudgeConfig, ModelConfig, OpenAIModel, SamplingConfig, TransformersModel
from tasks.cache import stage_key
from tasks.stages import PAIRWISE_UNREAD, SCORE_UNREAD

DEFAULT_SAMPLING = SamplingConfig()


def sample_key(model: ModelConfig, sampling: SamplingConfig = DEFAULT_SAMPLING) -> str:
    return stage_key("sample", {"questions_uri": "file:///q.parquet", "start": 0, "stop": 8,
                                "dataset": "nlgraph_shortest_path", "model": model, "sampling": sampling})


def test_a_setting_left_at_its_default_is_not_in_the_key():
    # Written out or omitted, a default is the same key: a field added later with a default that keeps
    # the old behaviour leaves existing artifacts valid.
    assert (sample_key(TransformersModel(name="m"))
            == sample_key(TransformersModel(name="m", dtype="auto", adapter=None)))
    assert (sample_key(TransformersModel(name="m"), SamplingConfig())
            == sample_key(TransformersModel(name="m"), SamplingConfig(top_p=1.0)))


def test_settings_that_change_results_change_the_key():
    base = sample_key(TransformersModel(name="m"))
    assert sample_key(TransformersModel(name="m", dtype="float16")) != base  # auto is float32 or bfloat16 here
    assert sample_key(TransformersModel(name="m", path="other/model")) != base
    assert sample_key(TransformersModel(name="m"), SamplingConfig(temperature=0.7)) != base


def test_labels_and_transport_settings_are_not_in_the_key():
    def endpoint(**kw) -> OpenAIModel:
        return OpenAIModel(backend="openai", base_url="http://127.0.0.1:8000/v1", path="served", **kw)
    base = sample_key(endpoint(name="a"))
    assert sample_key(endpoint(name="b", max_concurrency=2, request_timeout=5.0, max_retries=0,
                               retry_backoff=3.0, api_key_env="KEY")) == base
    assert sample_key(endpoint(name="a", logprobs=False)) != base
    q = {"store": "file:///s"}
    assert (stage_key("questions", {**q, "dataset_config": DatasetConfig(name="nlgraph_shortest_path", label="x")})
            == stage_key("questions", {**q, "dataset_config": DatasetConfig(name="nlgraph_shortest_path")}))


def test_where_the_store_is_is_not_in_the_key():
    """A store moved elsewhere keeps its keys: the `store` parameter is left out (input URIs are relative)."""
    dataset = DatasetConfig(name="nlgraph_shortest_path")
    keys = {stage_key("questions", {"dataset_config": dataset, "store": store})
            for store in (".wow-store", "/data/wow", "s3://bucket/prefix", None)}
    assert len(keys) == 1


def test_judge_keys_hold_the_settings_each_judge_reads():
    def keys(**judge) -> tuple[str, str]:
        inputs = {"samples_uri": "file:///s.parquet", "dataset": "nlgraph_shortest_path",
                  "model": TransformersModel(name="m"), "judge_config": JudgeConfig(**judge), "store": "file:///s"}
        return (stage_key("judge", inputs, PAIRWISE_UNREAD), stage_key("judge", {**inputs, "k": 5}, SCORE_UNREAD))

    pairwise, score = keys()
    # Which methods run and which batch sizes the score judge has: neither judge's verdicts change; nor
    # do judge ensembles, which combine the judgments made.
    assert keys(methods=["pairwise", "score"], score_k=[1, 5]) == (pairwise, score)
    assert keys(ensembles=[{"name": "e", "members": ["m", "n"], "rule": "majority"}]) == (pairwise, score)
    # The pairwise cap changes only the pairwise judge's work.
    capped = keys(max_pairs_per_question=2)
    assert capped[0] != pairwise and capped[1] == score
    # The protocol changes what the score judge is asked (every answer, in sample order), not the
    # pairwise judge (both orders are asked either way).
    paper = keys(protocol="paper")
    assert paper[0] == pairwise and paper[1] != score
    # Settings both read reach both keys.
    for changed in (keys(reasoning=False), keys(seed=1), keys(max_new_tokens=12)):
        assert changed[0] != pairwise and changed[1] != score
    # A judge setting added later is in both keys unless someone lists it as unread: this fails until
    # the new field is tested above.
    read = set(JudgeConfig.model_fields) - PAIRWISE_UNREAD["judge_config"]
    assert read == {"max_new_tokens", "reasoning", "max_pairs_per_question", "seed"}
    assert (set(JudgeConfig.model_fields) - SCORE_UNREAD["judge_config"]
            == read - {"max_pairs_per_question"} | {"protocol"})
