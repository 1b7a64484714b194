"""Backend registry. Each backend lives in its own module and is imported only when a config names it;
a model is loaded once per process and shared by every stage and every `ModelConfig` that names the same
weights (configurations that differ only in name, system prompt or temperature share one copy)."""
import difflib
import importlib
import threading

from wow_core.backends.base import Backend, Conversation
from wow_core.config import ModelConfig
from wow_core.machine import resolve_dtype
from wow_core.records import Generation

BACKENDS: dict[str, str] = {
    "transformers": "wow_core.backends.transformers_backend:TransformersBackend",
    "vllm": "wow_core.backends.vllm_backend:VLLMBackend",
    "openai": "wow_core.backends.openai_backend:OpenAIBackend",
}

# Settings applied around a loaded model rather than in it (the temperature is the sampling stage's).
PER_CONFIGURATION = {"name", "system_prompt", "temperature"}
class ModelLoadError(RuntimeError):
    """A configured model that could not be loaded (or its engine started); the message names it."""


_loaded: dict[str, Backend] = {}
_adapted: set[str] = set()  # keys of loaded models with an adapter
_load_lock = threading.Lock()
_loads = [0]


def load_count() -> int:
    """How many models this process has loaded (an engine started for one counts as its load)."""
    return _loads[0]


def get_backend(model: ModelConfig) -> Backend:
    """The loaded backend for `model`, loading it on first use in this process."""
    if model.backend not in BACKENDS:
        close = difflib.get_close_matches(model.backend, BACKENDS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown backend '{model.backend}'.{hint} Available: {', '.join(sorted(BACKENDS))}")
    # One copy per weights and precision: `auto` and the dtype it resolves to are the same model.
    key = model.model_copy(update={"dtype": resolve_dtype(model.dtype, model.device)}).model_dump_json(
        exclude=PER_CONFIGURATION) if model.backend != "openai" else model.model_dump_json(exclude=PER_CONFIGURATION)
    with _load_lock:
        if key not in _loaded:
            if model.adapter:
                # Adapted models are evaluated one after another: keep one in memory, not all of them.
                for other in list(_adapted):
                    _loaded.pop(other).close()
                    _adapted.discard(other)
            module, cls = BACKENDS[model.backend].split(":")
            try:
                _loaded[key] = getattr(importlib.import_module(module), cls)(model)
            except Exception as err:
                raise ModelLoadError(f"model '{model.name}' ('{model.path}', backend {model.backend}) could not be "
                                     f"loaded: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}") from err
            _loads[0] += 1
            if model.adapter:
                _adapted.add(key)
        backend = _loaded[key]
    return SystemPrompted(backend, model.system_prompt) if model.system_prompt else backend


class SystemPrompted:
    """A backend whose every conversation starts with a fixed system message."""

    def __init__(self, backend: Backend, system_prompt: str):
        self.backend, self.system_prompt = backend, system_prompt

    def close(self) -> None:
        self.backend.close()

    def _prefixed(self, conversations: list[Conversation]) -> list[Conversation]:
        return [[{"role": "system", "content": self.system_prompt}, *c] for c in conversations]

    def sample(self, conversations: list[Conversation], **sampling) -> list[list[Generation]]:
        return self.backend.sample(self._prefixed(conversations), **sampling)

    def generate(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        return self.backend.generate(self._prefixed(conversations), max_new_tokens=max_new_tokens)


__all__ = ["BACKENDS", "Backend", "Conversation", "ModelLoadError", "get_backend", "load_count"]
