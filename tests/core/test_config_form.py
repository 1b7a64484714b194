"""The config is the Prefect UI's run form: every field says what it is, and each model is a choice of
backend that shows only that backend's settings."""
import pytest
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate
from prefect.utilities.schema_tools.validation import ValidationError as FormError

from flows.elicit import elicit
from wow_core.config import (MODEL_CONFIGS, ConfigError, ExperimentConfig, OpenAIModel, TransformersModel, VllmModel,
                             parse_config)

DATASETS = [{"name": "nlgraph_shortest_path", "n_questions": 2}]


def undescribed(schema: dict) -> list[str]:
    """Every property of every object in `schema` (its definitions included) without a description; a
    property that is only a reference has its definition's (as the form shows it)."""
    missing, definitions = [], {**schema.get("$defs", {}), **schema.get("definitions", {})}

    def described(prop) -> bool:
        if not isinstance(prop, dict):
            return False
        if "$ref" in prop and "description" not in prop:
            prop = definitions[prop["$ref"].split("/")[-1]]
        return bool(str(prop.get("description", "")).strip())

    def walk(where: str, node) -> None:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                if not described(prop):
                    missing.append(f"{where}.{name}")
            for key, value in node.items():
                walk(f"{where}.{key}" if key not in ("properties", "$defs", "definitions") else where, value)
        elif isinstance(node, list):
            for item in node:
                walk(where, item)

    walk(schema.get("title", "(top level)"), {k: v for k, v in schema.items() if k not in ("$defs", "definitions")})
    for name, definition in definitions.items():
        walk(name, definition)
    return sorted(set(missing))


def test_every_field_of_the_config_has_a_description():
    schema = ExperimentConfig.model_json_schema()
    assert {c.__name__ for c in MODEL_CONFIGS.values()} <= set(schema["$defs"])
    assert undescribed(schema) == []


def test_a_field_without_a_description_is_found():
    assert undescribed({"title": "T", "properties": {"a": {"type": "string"}, "b": {"description": " "},
                                                    "x": {"$ref": "#/$defs/X"}, "y": {"$ref": "#/$defs/Y"}},
                        "$defs": {"X": {"description": "x", "properties": {"c": {"description": "c"}, "d": {}}},
                                  "Y": {"properties": {"e": {"items": {"properties": {"f": {}}}}}}}}) == \
        ["T.a", "T.b", "T.y", "X.d", "Y.e", "Y.e.items.f"]


def model_choice(schema: dict) -> dict:
    return schema["definitions"]["ExperimentConfig"]["properties"]["models"]["items"]


def test_the_flow_form_offers_one_choice_of_settings_per_backend():
    schema = parameter_schema(elicit.fn).model_dump_for_openapi()
    choice = model_choice(schema)
    # Prefect's UI renders anyOf as a choice (its V2 UI reads oneOf too, its V1 UI only anyOf).
    assert "oneOf" not in choice and choice["discriminator"]["propertyName"] == "backend"
    refs = {backend: ref.split("/")[-1] for backend, ref in choice["discriminator"]["mapping"].items()}
    assert refs == {b: c.__name__ for b, c in MODEL_CONFIGS.items()}
    # A new model in the form starts as the first choice: transformers, what a model without `backend` is.
    assert [item["$ref"].split("/")[-1] for item in choice["anyOf"]] == ["TransformersModel", "VllmModel",
                                                                         "OpenAIModel"]
    definitions = schema["definitions"]
    for backend, name in refs.items():
        model = definitions[name]
        # The tab is labelled by the title; picking it fills `backend` (a constant with a default).
        assert model["title"] == backend and model["additionalProperties"] is False
        assert model["properties"]["backend"]["const"] == model["properties"]["backend"]["default"] == backend
    fields = {b: set(definitions[n]["properties"]) for b, n in refs.items()}
    assert {"batch_size"} <= fields["transformers"] and not fields["transformers"] & {
        "base_url", "api_key_env", "request_timeout", "max_model_len", "kv_cache_gib", "max_concurrency"}
    assert {"max_model_len", "gpu_memory_utilization", "kv_cache_gib", "adapters", "max_concurrency"} <= fields["vllm"]
    assert not fields["vllm"] & {"batch_size", "base_url", "api_key_env", "request_timeout", "prefill"}
    assert {"base_url", "api_key_env", "max_concurrency", "request_timeout", "max_retries", "retry_backoff",
            "logprobs", "prefill"} <= fields["openai"]
    assert not fields["openai"] & {"batch_size", "device", "dtype", "adapter", "max_model_len", "kv_cache_gib"}
    assert undescribed(schema) == []


def test_the_form_accepts_each_backend_and_a_model_without_backend():
    schema = parameter_schema(elicit.fn).model_dump_for_openapi()
    models = [{"name": "t"}, {"name": "v", "backend": "vllm"},
              {"name": "o", "backend": "openai", "base_url": "http://127.0.0.1:8000/v1"}]
    config = {"datasets": DATASETS, "models": models, "generators": ["t"], "evaluators": ["t"]}
    validate({"config": config}, schema, raise_on_error=True)
    parsed = ExperimentConfig.model_validate(config)
    assert [type(m) for m in parsed.models] == [TransformersModel, VllmModel, OpenAIModel]
    # What a deployment stores (the config dumped whole) fills the form and reads back the same.
    dumped = parsed.model_dump(mode="json")
    validate({"config": dumped}, schema, raise_on_error=True)
    assert ExperimentConfig.model_validate(dumped) == parsed
    with pytest.raises(FormError):  # another backend's setting
        validate({"config": {**config, "models": [{"name": "t", "base_url": "http://x/v1"}]}}, schema,
                 raise_on_error=True)


@pytest.mark.parametrize("model, field, words", [
    ({"base_url": "http://127.0.0.1:8000/v1"}, "models.0", "`base_url`: for backend 'openai', not 'transformers'"),
    ({"backend": "vllm", "batch_size": 8}, "models.0", "`batch_size`: for backend 'transformers', not 'vllm'"),
    ({"max_concurrency": 2}, "models.0", "`max_concurrency`: for backend 'vllm' or 'openai', not 'transformers'"),
    ({"backend": "openai", "base_url": "http://h/v1", "adapter": "a"}, "models.0", "backend 'openai' cannot apply one"),
    ({"backend": "openai"}, "models.0.base_url", "Field required"),
    ({"backend": "openai", "base_url": "h/v1"}, "models.0.base_url", "must start with http:// or https://"),
    ({"backend": "vllm", "kv_cache_gib": 0}, "models.0.kv_cache_gib", "greater than or equal to 1"),
    ({"backend": "vlm"}, "models.0.backend", "does not match any of the expected tags: 'transformers', 'vllm'"),
    ({"batchsize": 8}, "models.0.batchsize", "Extra inputs are not permitted"),
])
def test_a_wrong_model_setting_names_the_field_and_the_backend(model, field, words):
    config = {"datasets": DATASETS, "models": [{"name": "m", **model}], "generators": ["m"], "evaluators": ["m"]}
    with pytest.raises(ConfigError) as err:
        parse_config(config, "c.yaml")
    assert f"c.yaml: field '{field}': " in str(err.value) and words in str(err.value), str(err.value)


def test_a_config_dumped_whole_before_backends_had_classes_still_reads():
    # Every model then had every backend's setting, at its default where unused.
    unused = {"device": "cpu", "dtype": "float32", "batch_size": 40, "adapter": None, "base_url": None,
              "api_key_env": None, "max_concurrency": None, "request_timeout": 600.0, "max_retries": 6,
              "retry_backoff": 1.0, "logprobs": True, "max_model_len": None, "gpu_memory_utilization": 0.9,
              "kv_cache_gib": None, "adapters": None, "prefill": "continue", "system_prompt": None,
              "temperature": None, "path": "smollm2-135m"}
    models = [{**unused, "name": "t", "backend": "transformers"}, {**unused, "name": "v", "backend": "vllm"},
              {**unused, "name": "o", "backend": "openai", "base_url": "http://h/v1", "prefill": "fold"}]
    parsed = parse_config({"datasets": DATASETS, "models": models, "generators": ["t"], "evaluators": ["t"]})
    # dtype float32 was the default then, and stays the dtype of the local models that wrote it.
    assert parsed.models == [TransformersModel(name="t", dtype="float32"),
                             VllmModel(name="v", backend="vllm", dtype="float32"),
                             OpenAIModel(name="o", backend="openai", base_url="http://h/v1", prefill="fold")]


def test_models_copy_with_an_adapter_and_an_endpoint_has_none():
    vllm = VllmModel(name="v", backend="vllm", adapters="merged")
    adapted = vllm.model_copy(update={"adapter": "s3://bucket/adapter", "name": "v+set"})
    assert isinstance(adapted, VllmModel) and adapted.adapter == "s3://bucket/adapter" and adapted.adapters == "merged"
    assert OpenAIModel(name="o", backend="openai", base_url="http://h/v1").adapter is None
