"""The precision rule (`dtype: auto`) on a table of machines, and what it does to cache keys."""
import warnings

import pytest

from tasks.cache import stage_key
from wow_core import machine as machine_module
from wow_core.config import SamplingConfig, TransformersModel, VllmModel
from wow_core.machine import Gpu, Machine, choose_dtype, parse_cpuinfo, precision_note, resolve_dtype

AVX2 = "fpu sse4_2 avx avx2 fma"
AVX512 = AVX2 + " avx512f avx512bw avx512vl avx512_vnni"
AVX512_BF16 = AVX512 + " avx512_bf16"
AMX = AVX512_BF16 + " amx_bf16 amx_tile amx_int8"


def cpu(flags: str, arch: str = "x86_64", gpus: tuple[Gpu, ...] = ()) -> Machine:
    return Machine(arch=arch, cpu_flags=frozenset(flags.split()), cores=2, memory_gib=24.0, gpus=gpus)


@pytest.mark.parametrize("flags, arch, capability, dtype", [
    (AVX2, "x86_64", "AVX2", "float32"),
    (AVX512, "x86_64", "AVX-512", "float32"),          # AVX-512 without BF16 emulates it too
    (AVX512_BF16, "x86_64", "AVX-512 BF16", "bfloat16"),
    (AMX, "x86_64", "AMX + AVX-512 BF16", "bfloat16"),
    ("avx amx_bf16", "x86_64", "AMX", "bfloat16"),
    ("sse4_2", "x86_64", "SSE4.2", "float32"),
    ("fp asimd sve", "aarch64", "Arm NEON SVE", "float32"),
    ("fp asimd sve bf16 i8mm", "aarch64", "Arm NEON SVE BF16", "bfloat16"),
    ("fp asimd bf16", "arm64", "Arm NEON BF16", "bfloat16"),
    ("", "x86_64", "x86_64 (no vector extension reported)", "float32"),
])
def test_cpu_dtype_by_capability(flags, arch, capability, dtype):
    m = cpu(flags, arch)
    assert m.cpu_capability() == capability
    choice = choose_dtype("cpu", m)
    assert choice.dtype == dtype
    assert capability in choice.reason


def test_the_note_names_the_model_the_dtype_and_why():
    assert choose_dtype("cpu", cpu(AVX2)).note("smollm2-135m") == \
        "smollm2-135m: float32 (this CPU has no native bfloat16: AVX2)"
    assert choose_dtype("cpu", cpu(AVX512_BF16)).note("m") == \
        "m: bfloat16 (this CPU computes bfloat16 natively: AVX-512 BF16)"


@pytest.mark.parametrize("capability, dtype", [((7, 0), "float16"), ((7, 5), "float16"), ((8, 0), "bfloat16"),
                                               ((8, 9), "bfloat16"), ((9, 0), "bfloat16"), ((6, 1), "float16")])
def test_gpu_dtype_by_compute_capability(capability, dtype):
    # The CPU's flags do not matter for a model on a GPU.
    m = cpu(AVX2, gpus=(Gpu(0, "GPU-0", (9, 0), 80.0), Gpu(1, "GPU-1", capability, 16.0)))
    assert choose_dtype("cuda:1", m).dtype == dtype
    assert choose_dtype("cuda", m).dtype == "bfloat16"   # 'cuda' is GPU 0
    assert f"{capability[0]}.{capability[1]}" in choose_dtype("cuda:1", m).reason


def test_a_gpu_that_is_not_there_is_named():
    with pytest.raises(ValueError, match=r"device 'cuda:2': no such GPU here \(1 visible"):
        choose_dtype("cuda:2", cpu(AVX2, gpus=(Gpu(0, "g", (8, 0), 40.0),)))
    # The note of a grid's parent run, which has no GPU, says where it is resolved instead of failing.
    assert "resolved where it runs" in precision_note("llama", "auto", "cuda", cpu(AVX2))


def test_parse_cpuinfo_reads_x86_flags_and_arm_features():
    x86 = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
           "processor\t: 1\nflags\t\t: fpu\n")
    assert parse_cpuinfo(x86) == (frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"}), "AMD EPYC 9B14")
    arm = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm bf16 sve\nCPU implementer\t: 0x41\n"
    assert parse_cpuinfo(arm)[0] == frozenset({"fp", "asimd", "evtstrm", "bf16", "sve"})


def test_explicit_dtype_wins_and_bf16_without_native_support_warns_once(monkeypatch):
    monkeypatch.setattr(machine_module, "detect", lambda: cpu(AVX2))
    machine_module._say_once.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_dtype("bfloat16", "cpu", model="slow-model") == "bfloat16"
        assert resolve_dtype("bfloat16", "cpu", model="slow-model") == "bfloat16"
        assert resolve_dtype("float16", "cpu", model="slow-model") == "float16"
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert messages[0].startswith("slow-model: dtype bfloat16 on this CPU (AVX2, no native bfloat16)")
    assert "8x slower than float32" in messages[0]
    # Where the CPU has it, no warning.
    monkeypatch.setattr(machine_module, "detect", lambda: cpu(AVX512_BF16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_dtype("bfloat16", "cpu", model="fast-model") == "bfloat16"
    assert not caught
    with pytest.raises(ValueError, match="`dtype` must be 'auto' or one of"):
        resolve_dtype("int8", "cpu")


def sample_key(model) -> str:
    return stage_key("sample", {"questions_uri": "file:///q.parquet", "start": 0, "stop": 8,
                                "dataset": "nlgraph_shortest_path", "model": model, "sampling": SamplingConfig()})


@pytest.mark.parametrize("cls", [TransformersModel, lambda **kw: VllmModel(backend="vllm", **kw)])
def test_an_auto_models_key_is_the_dtype_it_resolves_to(monkeypatch, cls):
    monkeypatch.setattr(machine_module, "detect", lambda: cpu(AVX2))
    on_avx2 = sample_key(cls(name="m"))
    assert cls(name="m").dtype == "auto"
    assert on_avx2 == sample_key(cls(name="m", dtype="float32"))
    monkeypatch.setattr(machine_module, "detect", lambda: cpu(AVX512_BF16))
    on_bf16 = sample_key(cls(name="m"))
    assert on_bf16 == sample_key(cls(name="m", dtype="bfloat16"))
    # A store made on one kind of CPU is never reused on the other.
    assert on_bf16 != on_avx2
    # An explicit float32 is float32 everywhere, and the same key as before `auto` (float32 then being the
    # default, left out of keys): stores made before it stay valid.
    assert sample_key(cls(name="m", dtype="float32")) == on_avx2
    legacy = stage_key("sample", {"questions_uri": "file:///q.parquet", "start": 0, "stop": 8,
                                  "dataset": "nlgraph_shortest_path", "sampling": SamplingConfig(),
                                  "model": cls(name="m").model_dump(mode="json", exclude={"name", "dtype"},
                                                                    exclude_defaults=True)})
    assert on_avx2 == legacy
