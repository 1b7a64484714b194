"""What this machine is, and the one rule that picks a model's precision from it.

Machines that run wow differ where it matters most for speed: a CPU with AVX-512 BF16 (or AMX, or
Arm's BF16 extension) computes bfloat16 natively and runs a small model ~1.3x faster in it than in
float32; a CPU with only AVX2 emulates it, and the same matrix product takes ~7.7x longer in bfloat16
than in float32 (docs/engines.md, "Precision"). So `dtype: auto`, the default of every local model,
is resolved here, from the machine's own report, never assumed:

- a GPU: bfloat16 where it computes it (compute capability >= 8.0: Ampere and later), else float16;
- a CPU: bfloat16 where it has `avx512_bf16` or `amx_bf16` (x86) or `bf16` (Arm), else float32.

Everything is read through `detect()`; tests build a `Machine` by hand (`parse_cpuinfo` reads the
text of /proc/cpuinfo) and pass it in.
"""
import dataclasses
import functools
import logging
import os
import platform
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
# On an AVX2-only CPU (torch 2.13.0+cpu, 2 threads, 2026-12-07): a 128x576 @ 576x1536 linear layer,
# SmolLM2-135M's MLP shape, took 13.8 ms in bfloat16 against 1.8 ms in float32.
EMULATED_BF16_SLOWDOWN = 7.7
X86_NATIVE_BF16 = ("avx512_bf16", "amx_bf16")
ARM_NATIVE_BF16 = ("bf16",)


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU as torch sees it."""
    index: int
    name: str
    capability: tuple[int, int]   # CUDA compute capability (8, 0) = A100
    memory_gib: float


@dataclasses.dataclass(frozen=True)
class Machine:
    """The parts of a machine that decide how a model runs on it."""
    arch: str                      # platform.machine(): x86_64, aarch64, arm64
    cpu_flags: frozenset[str]      # /proc/cpuinfo "flags" (x86) or "Features" (Arm)
    cpu_name: str = ""
    cores: int = 1                 # usable by this process (its CPU affinity)
    memory_gib: float = 0.0
    gpus: tuple[Gpu, ...] = ()

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ("aarch64", "arm64")

    def native_cpu_bf16(self) -> bool:
        """Whether the CPU computes bfloat16 natively (AVX-512 BF16, AMX, or Arm's BF16)."""
        wanted = ARM_NATIVE_BF16 if self.is_arm else X86_NATIVE_BF16
        return any(flag in self.cpu_flags for flag in wanted)

    def cpu_capability(self) -> str:
        """The CPU's widest vector and matrix extensions, as a person names them: 'AVX2',
        'AVX-512', 'AVX-512 BF16', 'AMX', 'Arm NEON BF16', ..."""
        f = self.cpu_flags
        if self.is_arm:
            parts = ["Arm"] + [name for flag, name in (("asimd", "NEON"), ("sve", "SVE"), ("bf16", "BF16"))
                               if flag in f]
            return " ".join(parts)
        if "amx_bf16" in f:
            return "AMX" + (" + AVX-512 BF16" if "avx512_bf16" in f else "")
        if "avx512f" in f:
            return "AVX-512 BF16" if "avx512_bf16" in f else "AVX-512"
        for flag, name in (("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2")):
            if flag in f:
                return name
        return f"{self.arch} (no vector extension reported)"

    def gpu(self, device: str) -> Gpu:
        """The GPU a device string names ('cuda' is GPU 0).

        Raises:
            ValueError: no such GPU is visible to this process.
        """
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        for gpu in self.gpus:
            if gpu.index == index:
                return gpu
        raise ValueError(f"device {device!r}: no such GPU here ({len(self.gpus)} visible to this process)")


def parse_cpuinfo(text: str) -> tuple[frozenset[str], str]:
    """(flags, model name) from the text of /proc/cpuinfo: x86's `flags`, Arm's `Features`."""
    flags: frozenset[str] = frozenset()
    name = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        elif key in ("model name", "cpu model", "hardware") and not name:
            name = value.strip()
    return flags, name


def _gpus() -> tuple[Gpu, ...]:
    try:
        import torch
    except ImportError:
        return ()
    if not torch.cuda.is_available():
        return ()
    return tuple(Gpu(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)),
                     torch.cuda.get_device_properties(i).total_memory / 2**30)
                 for i in range(torch.cuda.device_count()))


@functools.cache
def detect() -> Machine:
    """This machine, read once per process."""
    try:
        flags, name = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        flags, name = frozenset(), platform.processor()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    return Machine(arch=platform.machine(), cpu_flags=flags, cpu_name=name, cores=cores, memory_gib=memory,
                   gpus=_gpus())


@dataclasses.dataclass(frozen=True)
class DtypeChoice:
    """A model's precision and why it is that."""
    dtype: str
    reason: str

    def note(self, model: str) -> str:
        """One line for logs and reports: 'smollm2-135m: float32 (this CPU has no native bfloat16: AVX2)'."""
        return f"{model}: {self.dtype} ({self.reason})"


def choose_dtype(device: str, machine: Machine) -> DtypeChoice:
    """The precision `dtype: auto` means for a model on `device` of `machine` (the rule in the module
    docstring).

    Raises:
        ValueError: `device` names a GPU this machine does not have.
    """
    if device.startswith("cuda"):
        gpu = machine.gpu(device)
        major, minor = gpu.capability
        if gpu.capability >= (8, 0):
            return DtypeChoice("bfloat16", f"{gpu.name}, compute capability {major}.{minor}, computes bfloat16")
        return DtypeChoice("float16", f"{gpu.name}, compute capability {major}.{minor}: no bfloat16 before 8.0")
    capability = machine.cpu_capability()
    if machine.native_cpu_bf16():
        return DtypeChoice("bfloat16", f"this CPU computes bfloat16 natively: {capability}")
    return DtypeChoice("float32", f"this CPU has no native bfloat16: {capability}")


def slow_bf16_warning(machine: Machine) -> str:
    return (f"dtype bfloat16 on this CPU ({machine.cpu_capability()}, no native bfloat16): it runs, emulated, "
            f"about {EMULATED_BF16_SLOWDOWN:.0f}x slower than float32 in the model's matrix products "
            "(docs/engines.md); `dtype: auto` picks float32 here")


@functools.cache
def _say_once(text: str, warn: bool) -> None:
    """Log (or warn) `text` once per process, however many tasks resolve the same model."""
    if warn:
        warnings.warn(text, stacklevel=3)
    else:
        log.info("precision: %s", text)


def resolve_dtype(dtype: str, device: str, machine: Machine | None = None, model: str | None = None) -> str:
    """The precision a model configured with `dtype` runs in on `device`: `auto` by the rule of
    `choose_dtype`, anything else as given. With `model` (its name), what was chosen and why is logged
    once per process, and an explicit bfloat16 on a CPU without it warns once.

    Raises:
        ValueError: an unknown dtype, or a GPU this machine does not have (for `auto`).
    """
    machine = machine or detect()
    if dtype == "auto":
        choice = choose_dtype(device, machine)
        if model is not None:
            _say_once(choice.note(model), warn=False)
        return choice.dtype
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be 'auto' or one of {list(DTYPES)}, got {dtype!r}")
    if model is not None and dtype == "bfloat16" and not device.startswith("cuda") and not machine.native_cpu_bf16():
        _say_once(f"{model}: {slow_bf16_warning(machine)}", warn=True)
    return dtype


def precision_note(model: str, dtype: str, device: str, machine: Machine | None = None) -> str:
    """The one line that says what precision a model runs in here and why."""
    machine = machine or detect()
    if dtype != "auto":
        slow = (dtype == "bfloat16" and not device.startswith("cuda") and not machine.native_cpu_bf16())
        why = f"set in the config; {machine.cpu_capability()} emulates it, ~{EMULATED_BF16_SLOWDOWN:.0f}x slower" \
            if slow else "set in the config"
        return DtypeChoice(dtype, why).note(model)
    try:
        return choose_dtype(device, machine).note(model)
    except ValueError:  # a GPU model seen from a machine without that GPU (a grid's parent run)
        return (f"{model}: auto on {device}, resolved where it runs (bfloat16 on compute capability >= 8.0, "
                "else float16)")
