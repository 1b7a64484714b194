"""Backend registry. Each backend lives in its own module and is imported only when a config names it;
a model is loaded once per process and shared by every stage that names the same `ModelConfig`."""
import difflib
import importlib
import threading

from wow_core.backends.base import Backend, Conversation
from wow_core.config import ModelConfig

BACKENDS: dict[str, str] = {
    "transformers": "wow_core.backends.transformers_backend:TransformersBackend",
    "vllm": "wow_core.backends.vllm_backend:VLLMBackend",
    "openai": "wow_core.backends.openai_backend:OpenAIBackend",
}
# The pip extra that installs what a backend imports (see pyproject.toml).
EXTRAS: dict[str, str] = {"vllm": "gpu", "openai": "openai"}

_loaded: dict[str, Backend] = {}
_load_lock = threading.Lock()


def get_backend(model: ModelConfig) -> Backend:
    """The loaded backend for `model`, loading it on first use in this process."""
    if model.backend not in BACKENDS:
        close = difflib.get_close_matches(model.backend, BACKENDS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown backend '{model.backend}'.{hint} Available: {', '.join(sorted(BACKENDS))}")
    key = model.model_dump_json()
    with _load_lock:
        if key not in _loaded:
            if model.adapter:
                # Adapted models are evaluated one after another: keep one in memory, not all of them.
                for other in [k for k, b in _loaded.items() if getattr(b, "config", None) and b.config.adapter]:
                    del _loaded[other]
            module, cls = BACKENDS[model.backend].split(":")
            try:
                backend_module = importlib.import_module(module)
            except ModuleNotFoundError as err:
                if model.backend not in EXTRAS:
                    raise
                raise ImportError(f"backend '{model.backend}' (model '{model.name}') needs the package "
                                  f"'{err.name}': pip install 'wow[{EXTRAS[model.backend]}]'") from err
            _loaded[key] = getattr(backend_module, cls)(model)
        return _loaded[key]


__all__ = ["BACKENDS", "EXTRAS", "Backend", "Conversation", "get_backend"]
