"""The lock files agree with the pyproject files they were made from, and set-up installed what they pin."""
import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [ROOT, ROOT / "engines" / "vllm-cpu", ROOT / "engines" / "vllm-cuda"]


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed here (scripts/setup installs it)")
    return found


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.relative_to(ROOT).as_posix() or ".")
def test_each_lock_matches_its_pyproject(project, tmp_path):
    # --offline with an empty cache: the check reads the lock and the pyproject only, never the network.
    out = subprocess.run([uv(), "lock", "--check", "--offline", "--project", str(project)], capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "UV_CACHE_DIR": str(tmp_path),
                                                      "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr


def test_a_changed_requirement_makes_the_lock_stale(tmp_path):
    # The check above can fail: the same lock beside a pyproject that asks for something else.
    shutil.copy(ROOT / "uv.lock", tmp_path / "uv.lock")
    text = (ROOT / "pyproject.toml").read_text()
    assert '"httpx>=0.27"' in text
    (tmp_path / "pyproject.toml").write_text(text.replace('"httpx>=0.27"', '"httpx>=0.28.1"'))
    (tmp_path / "README.md").write_text("")
    out = subprocess.run([uv(), "lock", "--check", "--offline", "--project", str(tmp_path)], capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "UV_CACHE_DIR": str(tmp_path / "c"),
                                                      "HOME": str(tmp_path)})
    assert out.returncode != 0


def test_this_environment_is_the_lock():
    # A universal lock may hold several versions of a package, one per Python range: this one's is among them.
    lock: dict[str, set[str]] = {}
    for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        lock.setdefault(p["name"], set()).add(p["version"])
    for name in ("torch", "transformers", "trl", "peft", "prefect", "datasets", "numpy", "pandas", "pyarrow"):
        installed = importlib.metadata.version(name).split("+", 1)[0]  # torch's +cpu build tag
        assert installed in lock[name], f"{name}: installed {installed}, locked {lock[name]}: run scripts/setup"


def test_python_version_is_the_projects():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"
    assert sys.version_info >= (3, 11)
