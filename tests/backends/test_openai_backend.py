"""The OpenAI-compatible backend against a real server on loopback: llama.cpp's own server (prebuilt in
the `xllamacpp` wheel) serving the packaged SmolLM2-135M GGUF, started and stopped by the tests."""
import importlib.util
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

from wow_core.backends import get_backend
from wow_core.backends.openai_backend import EndpointError, OpenAIBackend, fold_prefill
from wow_core.backends.transformers_backend import packaged_gguf
from wow_core.config import OpenAIModel, TransformersModel

API_KEY = "wow-test-key-5f1c"
KEY_ENV = "WOW_TEST_LLAMA_KEY"
EOS_ID = 2  # SmolLM2's <|im_end|>

# llama.cpp's C++ server runs in a thread of this process until it is killed.
SERVER_SCRIPT = """
import sys, threading
import xllamacpp
params = xllamacpp.CommonParams()
params.model.path, params.port, params.api_keys = sys.argv[1], int(sys.argv[2]), [sys.argv[3]]
params.hostnames = ["127.0.0.1"]
params.n_parallel, params.n_ctx = 4, 4096
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
server = xllamacpp.Server(params)
threading.Event().wait()
"""

CONVS = [
    [{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
    [{"role": "user", "content": "Name one colour of the sky, in a long and detailed sentence please."}],
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama.cpp's server in a child process on a fixed loopback port, so that it can be restarted."""

    def __init__(self, model: str, log: Path):
        self.model, self.log, self.port, self.process = model, log, free_port(), None
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, self.model, str(self.port), API_KEY],
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.process.returncode}:\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("llama.cpp server did not become healthy in 120 s")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("llama.cpp's server is not installed: pip install xllamacpp (part of wow[dev])")
    s = LlamaServer(str(packaged_gguf("smollm2-135m")), tmp_path_factory.mktemp("llama-server") / "server.log")
    s.start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)


def model(server: LlamaServer, **settings) -> OpenAIModel:
    return OpenAIModel(name="smollm2-llama.cpp", backend="openai", path="smollm2-135m", base_url=server.base_url,
                       api_key_env=KEY_ENV, **settings)


@pytest.mark.slow
def test_sampling_n_answers_with_logprobs(server):
    backend = get_backend(model(server))
    out = backend.sample(CONVS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    assert [len(g) for g in out] == [3, 3] and backend.requests_sent == 2  # llama.cpp's server honours n
    for gens in out:
        for g in gens:
            assert g.text and 1 <= g.n_tokens <= 12 and g.finish_reason in {"stop", "length"}
            assert all(lp <= 0 for lp in g.token_logprobs) and g.mean_logprob is not None
            assert len(g.token_ids) == g.n_tokens  # llama.cpp sends each token's id
    assert len({g.text for g in out[1]}) > 1
    # A server that ignores `n` (llama-cpp-python's) is sent one request per missing sample, each with
    # its own seed.
    one_by_one = OpenAIBackend(model(server))
    one_by_one.server_honours_n = False
    out = one_by_one.sample(CONVS, n=3, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=7)
    assert [len(g) for g in out] == [3, 3] and one_by_one.requests_sent == 6
    assert len({g.text for g in out[1]}) > 1 and all(g.token_logprobs for gens in out for g in gens)


@pytest.mark.slow
def test_judge_calls_are_greedy_and_continue_a_prefilled_reply(server):
    backend = OpenAIBackend(model(server))
    first, again = backend.generate(CONVS, max_new_tokens=16), backend.generate(CONVS, max_new_tokens=16)
    assert [g.text for g in again] == [g.text for g in first]  # temperature 0
    for g, h in zip(first, again):
        assert g.text and h.token_logprobs == pytest.approx(g.token_logprobs, abs=1e-3)
    [stopped] = backend.generate([[{"role": "user", "content": "Say hi."}]], max_new_tokens=64)
    assert stopped.finish_reason == "stop" and EOS_ID not in stopped.token_ids  # the end token is left out
    assert len(stopped.token_logprobs) == len(stopped.token_ids)
    counting = [{"role": "user", "content": "Count from 1 to 10, separated by commas."},
                {"role": "assistant", "content": "1, 2, 3, 4,"}]
    [continued] = backend.generate([counting], max_new_tokens=4)
    assert continued.text.lstrip().startswith("5")  # continued from "4,", not a new reply


@pytest.mark.slow
def test_logprobs_are_the_models_own(server):
    # The same GGUF in transformers (dequantized) scores the server's tokens alike; llama.cpp multiplies
    # with quantized activations, so single tokens differ by up to ~0.3 and the means by a few hundredths.
    reference = get_backend(TransformersModel(name="smollm2-135m", dtype="float32"))
    for conversation, g in zip(CONVS, OpenAIBackend(model(server)).generate(CONVS, max_new_tokens=16)):
        prompt = reference._encode(conversation)
        ids = torch.tensor([prompt + g.token_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(reference.model(ids).logits[0, :-1].float(), dim=-1)
        forward = [logprobs[t - 1, ids[0, t]].item() for t in range(len(prompt), ids.shape[1])]
        assert reference.tokenizer.decode(g.token_ids, skip_special_tokens=True) == g.text
        assert g.mean_logprob == pytest.approx(sum(forward) / len(forward), abs=0.05)
        # What the prompt cost, as the server's `usage` says: the prompt transformers encodes.
        assert g.prompt_tokens == len(prompt)
        [local] = reference.generate([conversation], max_new_tokens=4)
        assert local.prompt_tokens == len(prompt)


@pytest.mark.slow
def test_answers_without_logprobs_have_no_mean_logprob(server):
    backend = OpenAIBackend(model(server, logprobs=False))
    [[g]] = backend.sample(CONVS[:1], n=1, temperature=1.0, top_p=1.0, max_new_tokens=8, seed=0)
    assert g.text and g.token_logprobs == [] and g.mean_logprob is None


@pytest.mark.slow
def test_a_request_outlives_a_server_restart(server):
    backend = OpenAIBackend(model(server, max_retries=8, retry_backoff=0.5))
    server.stop()
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(backend.generate, CONVS[:1], 8)
            time.sleep(2)  # refused, waiting to retry
            assert not pending.done() and backend.requests_sent >= 2
            server.start()
            [reply] = pending.result(timeout=120)
    finally:
        if server.process.poll() is not None:
            server.start()
    assert reply.text and reply.token_logprobs


@pytest.mark.slow
def test_a_refused_request_names_status_message_model_and_url_never_the_key(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "wrong-key-0000")
    backend = OpenAIBackend(model(server))
    with pytest.raises(EndpointError) as refused:
        backend.generate(CONVS[:1], max_new_tokens=4)
    message = str(refused.value)
    assert refused.value.status == 401 and backend.requests_sent == 1  # 4xx: no retry
    assert "401" in message and "smollm2-llama.cpp" in message and server.base_url in message
    assert "invalid api key" in message.lower() and "wrong-key-0000" not in message


def test_config_needs_a_base_url_and_a_set_key_variable(monkeypatch):
    with pytest.raises(ValueError, match="base_url\n  Field required"):
        OpenAIModel(name="m", backend="openai", path="gpt-4o")
    with pytest.raises(ValueError, match="for backend 'openai'"):
        TransformersModel(name="m", base_url="http://127.0.0.1:1/v1")
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ValueError, match=KEY_ENV):
        OpenAIBackend(OpenAIModel(name="m", backend="openai", path="gpt-4o", base_url="http://127.0.0.1:1/v1",
                                  api_key_env=KEY_ENV))


def test_fold_moves_the_prefilled_reply_into_the_last_user_turn():
    conversation = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."},
                    {"role": "user", "content": "Conclude."}, {"role": "assistant", "content": "The total weight is"}]
    folded, prefill = fold_prefill(conversation)
    assert prefill == "The total weight is"
    assert folded == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."},
                      {"role": "user", "content": "Conclude.\n\nBegin your reply with exactly: The total weight is"}]
