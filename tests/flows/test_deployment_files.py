"""deployments/prefect.yaml without a server: every grid deployment names a flow whose one parameter
is the config, and the default that the build steps make from a config file fills that flow's form;
the unit deployments take a config and a batch from the grid that starts them."""
import sys

import yaml
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate
from prefect.utilities.templating import apply_values

from flows.deploy import PREFECT_YAML, ROOT, config_parameter
from wow_core.config import load_config


def build_outputs(spec: dict) -> dict:
    """What `prefect deploy` gets from the build steps: step id -> {config}."""
    outputs = {}
    for step in spec["build"]:
        [(function, inputs)] = step.items()
        assert function == "flows.deploy.config_parameter"
        outputs[inputs["id"]] = config_parameter(inputs["path"])
        assert outputs[inputs["id"]]["config"] == load_config(ROOT / inputs["path"]).model_dump(mode="json")
    return outputs


def test_every_deployment_default_fills_its_flow_form():
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    outputs = build_outputs(spec)
    for d in spec["deployments"]:
        schema = parameter_schema(load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))).model_dump_for_openapi()
        if d["entrypoint"] == "flows/units.py:unit":
            assert list(schema["properties"]) == ["config", "batch"] and "parameters" not in d, d
            assert d["work_pool"]["name"] == d["name"], d  # unit/gpu on the gpu pool, unit/cpu on the cpu pool
            continue
        assert list(schema["properties"]) == ["config"] and "ExperimentConfig" in schema["definitions"]
        assert d["work_pool"]["name"] == "cpu", d  # a grid's parent holds no model
        parameters = apply_values(d["parameters"], outputs)
        assert parameters["config"]["name"] == ("demo" if d["name"] == "cpu" else "paper"), d
        validate(parameters, schema, raise_on_error=True)


def test_nightly_grid_runs_the_paper_config_with_its_model_work_on_the_gpu_workers():
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    [nightly] = [d for d in spec["deployments"] if d["name"] == "grid-nightly"]
    assert nightly["entrypoint"] == "flows/grid.py:grid" and nightly["work_pool"]["name"] == "cpu"
    config = apply_values(nightly["parameters"], build_outputs(spec))["config"]
    assert config["store"] == "s3://wow-artifacts/paper"
    assert config["execution"] == {"workers": "auto", "deployment": "unit/gpu", "max_attempts": 3}
    assert [s["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]


def test_no_module_beside_an_entrypoint_hides_a_standard_library_module():
    # Loading an entrypoint puts its folder first on sys.path: a flows/profile.py once made torch's
    # `import cProfile` find it instead of the standard library's `profile`, and every model load in a
    # deployed flow run failed.
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    folders = {(ROOT / d["entrypoint"].split(":")[0]).parent for d in spec["deployments"]}
    hiding = sorted(f"{p.relative_to(ROOT)}" for folder in folders for p in folder.iterdir()
                    if p.stem in sys.stdlib_module_names and (p.suffix == ".py" or (p / "__init__.py").exists()))
    assert folders == {ROOT / "flows"} and hiding == []
