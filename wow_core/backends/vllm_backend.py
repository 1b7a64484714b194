"""vLLM backend (GPU; the `gpu` extra): offline `vllm.LLM` with per-token log-probs and LoRA requests.

One engine per base model and dtype serves the base model and every adapter evaluated on it: an
adapter is a `LoRARequest` on the shared engine, not a second copy of the weights. Prefix caching is
on, so judge prompts that share their question pre-fill it once. Prompts are rendered with the
tokenizer's chat template exactly as the transformers backend renders them (a conversation ending with
an assistant message is continued from it) and passed as token ids.

Log-probs are the sampled tokens' under the model's raw distribution (vLLM's default `raw_logprobs`,
as the transformers backend reads them); the end-of-sequence or stop token is dropped, as there.
"""
import itertools
import json
import tempfile
import threading
from pathlib import Path

import fsspec
from vllm import LLM, SamplingParams
from vllm.lora.request import LoRARequest

from wow_core.backends.base import Conversation
from wow_core.backends.transformers_backend import resolve_model_path
from wow_core.config import ModelConfig
from wow_core.records import Generation

MAX_LORA_RANK = 64  # LoRA buffers are sized for this rank; the paper's adapters use 16
SEED_MODULUS = 2**31

_engines: dict[tuple[str, str], tuple[LLM, threading.Lock]] = {}
_engines_lock = threading.Lock()
_lora_ids = itertools.count(1)


def engine(path: str, dtype: str) -> tuple[LLM, threading.Lock]:
    """The process's engine for a base model (loaded on first use) and the lock that serialises its calls."""
    with _engines_lock:
        if (path, dtype) not in _engines:
            llm = LLM(model=resolve_model_path(path), dtype=dtype, enable_prefix_caching=True,
                      enable_lora=True, max_lora_rank=MAX_LORA_RANK, seed=0)
            _engines[(path, dtype)] = (llm, threading.Lock())
        return _engines[(path, dtype)]


def local_adapter(adapter: str) -> str:
    """A local folder holding the PEFT adapter at `adapter` (a path or fsspec URL), copied once if remote."""
    fs, path = fsspec.core.url_to_fs(adapter)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return path
    folder = tempfile.mkdtemp(prefix="wow-adapter-")  # kept: vLLM loads it at the first request
    fs.get(path.rstrip("/") + "/", folder, recursive=True)
    return folder


class VLLMBackend:
    """A Hugging Face model (or the packaged GGUF, dequantized) on a vLLM engine, optionally LoRA-adapted."""

    def __init__(self, config: ModelConfig):
        self.config = config
        self.llm, self._lock = engine(config.path, config.dtype)
        self.tokenizer = self.llm.get_tokenizer()
        self.lora = None
        if config.adapter:
            folder = local_adapter(config.adapter)
            rank = json.loads((Path(folder) / "adapter_config.json").read_text())["r"]
            if rank > MAX_LORA_RANK:
                raise ValueError(f"`adapter` {config.adapter}: LoRA rank {rank} exceeds the vLLM backend's "
                                 f"{MAX_LORA_RANK}; train with lora_r <= {MAX_LORA_RANK} or use the transformers backend")
            self.lora = LoRARequest(config.name, next(_lora_ids), folder)

    def _encode(self, conversation: Conversation) -> list[int]:
        prefilled = conversation[-1]["role"] == "assistant"
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=not prefilled,
                                                  continue_final_message=prefilled, tokenize=True, return_dict=False)

    def _complete(self, conversations: list[Conversation], params: list[SamplingParams]) -> list[list[Generation]]:
        prompts = [{"prompt_token_ids": self._encode(c)} for c in conversations]
        with self._lock:
            outputs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=False)
        return [[self._generation(o) for o in request.outputs] for request in outputs]

    @staticmethod
    def _generation(output) -> Generation:
        ids = list(output.token_ids)
        logprobs = [step[token].logprob for token, step in zip(ids, output.logprobs)]
        # stop_reason None: the end-of-sequence token ended it; an int: a stop token did. Both are in
        # token_ids but not in the text.
        if output.finish_reason == "stop" and not isinstance(output.stop_reason, str) and ids:
            ids, logprobs = ids[:-1], logprobs[:-1]
        return Generation(text=output.text, token_ids=ids, token_logprobs=logprobs,
                          finish_reason="length" if output.finish_reason == "length" else "stop")

    def sample(self, conversations: list[Conversation], n: int, temperature: float, top_p: float,
               max_new_tokens: int, seed: int) -> list[list[Generation]]:
        # vLLM seeds the k-th of a request's n samples with seed + k.
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                 seed=(seed + c * n) % SEED_MODULUS, logprobs=0)
                  for c in range(len(conversations))]
        return self._complete(conversations, params)

    def generate(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        greedy = SamplingParams(n=1, temperature=0.0, max_tokens=max_new_tokens, logprobs=0)
        return [g[0] for g in self._complete(conversations, [greedy] * len(conversations))]
