"""OpenAI-compatible backend: chat completions over HTTP (hosted APIs, `vllm serve`, llama.cpp's server).

Requests run concurrently (asyncio, at most `max_concurrency` in flight) and are retried with
exponential backoff on timeouts, connection errors, 429 and 5xx, so a server that restarts mid-run
costs a wait, not the run. Any other 4xx is final: the error names the status, the server's message,
the model and the base URL, never the key.

Server differences this handles:
- `n`: llama-cpp-python's server returns one choice whatever `n` says (llama.cpp's own honours it); the
  missing samples are asked for one request each (seeds `seed + k`, as vLLM seeds its own `n`
  children), and later calls do so at once.
- log-probs are asked for with `logprobs: true, top_logprobs: 1` (llama.cpp returns none for 0); an
  answer that comes without them has empty `token_logprobs` (so `mean_logprob` is None) and is left out
  of the logits method and ECE; each call logs how many there were.
- token ids come only from servers that send them (llama.cpp's `id` per token); otherwise they are [].
- a prefilled reply (the conversation ends with an assistant message): see `OpenAIModel.prefill`; a
  reply that begins with the prefilled text has it removed (llama.cpp's server echoes it).
- the end-of-sequence token, which llama.cpp and vLLM list among the log-probs, is left out of them:
  vLLM says which token ended a choice (`stop_reason`: None for end-of-sequence, a token id for a stop
  token, a string for a stop string, which is not among the tokens), others are told by their text.
- token ids: vLLM sends them when asked (`return_tokens_as_token_ids`, tokens then read 'token_id:N'),
  llama.cpp always (`id`); from other servers they are [].

The same client talks to the vLLM engines wow starts itself (`backends/vllm_backend.py`): there the
endpoint is an `Endpoint` made by the engine, with its liveness check, so that a request to an engine
that died fails at once (`EngineDied`) instead of being retried against nothing.
"""
import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx

from wow_core import progress
from wow_core.backends.base import Conversation, current_priority
from wow_core.config import OpenAIModel
from wow_core.records import Generation

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 429} | set(range(500, 600)) - {501, 505}  # 501, 505: the server will never do it
MAX_BACKOFF = 60.0
SEED_MODULUS = 2**31  # llama.cpp reads the seed as uint32 and some servers as int32
DEFAULT_CONCURRENCY = 8  # an endpoint's rate limits are unknown


class EndpointError(RuntimeError):
    """A request the endpoint refused (4xx) or that kept failing after every retry."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class EngineDied(EndpointError):
    """A request failed because the engine behind the endpoint is gone (its liveness check says so)."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where requests go: base URL (up to '/v1'), key, the model name to ask, and for an engine wow
    runs itself, its liveness check and that it is vLLM (which sends token ids when asked)."""
    base_url: str
    model: str
    api_key: str | None = None
    alive: Callable[[], bool] | None = None
    vllm: bool = False


def run_coroutine(coroutine):
    """Run `coroutine` to completion from sync code, also where an event loop already runs in this
    thread (a notebook): then it runs in a worker thread with its own loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def fold_prefill(conversation: Conversation) -> tuple[Conversation, str]:
    """(conversation without its final assistant message, that message's text), the text asked for in
    the last user turn instead: for endpoints that cannot continue an assistant message."""
    *rest, last = conversation
    user = max(i for i, m in enumerate(rest) if m["role"] == "user")
    ask = f"{rest[user]['content']}\n\nBegin your reply with exactly: {last['content']}"
    return [*rest[:user], {**rest[user], "content": ask}, *rest[user + 1:]], last["content"]


class OpenAIBackend:
    """A model behind an OpenAI-compatible chat completions endpoint."""

    def __init__(self, config: OpenAIModel, endpoint: Endpoint | None = None):
        """`endpoint`: where to send requests; by default the config's `base_url`, `path` and the key
        in `api_key_env`."""
        self.config = config
        if endpoint is None:
            key = None
            if config.api_key_env:
                key = os.environ.get(config.api_key_env)
                if not key:
                    raise ValueError(f"model '{config.name}': `api_key_env` names the environment variable "
                                     f"{config.api_key_env}, which is not set")
            endpoint = Endpoint(base_url=config.base_url, model=config.path, api_key=key)
        self.endpoint = endpoint
        self.url = endpoint.base_url.rstrip("/") + "/chat/completions"
        self._key = endpoint.api_key
        self.server_honours_n = True  # until a reply shows otherwise
        self.requests_sent = 0

    def close(self) -> None:
        """Nothing to release: each call opens and closes its own connections."""

    def sample(self, conversations: list[Conversation], n: int, temperature: float, top_p: float,
               max_new_tokens: int, seed: int) -> list[list[Generation]]:
        sampling = {"temperature": temperature, "top_p": top_p, "max_tokens": max_new_tokens}
        return run_coroutine(self._complete(conversations, n, sampling, seed))

    def generate(self, conversations: list[Conversation], max_new_tokens: int) -> list[Generation]:
        greedy = {"temperature": 0.0, "max_tokens": max_new_tokens}
        return [g[0] for g in run_coroutine(self._complete(conversations, 1, greedy, 0))]

    async def _complete(self, conversations: list[Conversation], n: int, sampling: dict,
                        seed: int) -> list[list[Generation]]:
        limit = self.config.max_concurrency or DEFAULT_CONCURRENCY
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        async with httpx.AsyncClient(headers=headers, timeout=self.config.request_timeout,
                                     limits=httpx.Limits(max_connections=limit)) as client:
            slots = asyncio.Semaphore(limit)
            results = await asyncio.gather(*[
                self._samples(client, slots, conversation, n, sampling, (seed + c * n) % SEED_MODULUS)
                for c, conversation in enumerate(conversations)])
        missing = sum(bool(g.text) and not g.token_logprobs for gens in results for g in gens)
        if self.config.logprobs and missing:
            log.warning("model '%s': %d of %d answers came without log-probs; the logits method and ECE "
                        "leave them out", self.config.name, missing, sum(len(g) for g in results))
        return results

    async def _samples(self, client: httpx.AsyncClient, slots: asyncio.Semaphore, conversation: Conversation,
                       n: int, sampling: dict, seed: int) -> list[Generation]:
        """`n` generations of one conversation: one request with `n`, topped up one by one if the
        server returned fewer choices."""
        body = {"model": self.endpoint.model, "messages": conversation, **sampling}
        prefill = conversation[-1]["content"] if conversation[-1]["role"] == "assistant" else None
        if prefill is not None and self.config.prefill == "fold":
            body["messages"], _ = fold_prefill(conversation)
        elif prefill is not None:
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        if self.endpoint.vllm:  # an engine wow started: it sends token ids and schedules by priority
            body |= {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True,
                     "priority": current_priority()}
        elif self.config.logprobs:
            body |= {"logprobs": True, "top_logprobs": 1}
        generations: list[Generation] = []
        if n == 1 or self.server_honours_n:
            generations = await self._request(client, slots, body | {"n": n, "seed": seed}, prefill)
            if len(generations) < n:
                self.server_honours_n = False
        rest = await asyncio.gather(*[self._request(client, slots, body | {"n": 1, "seed": (seed + k) % SEED_MODULUS},
                                                    prefill)
                                      for k in range(len(generations), n)])
        generations += [g for gens in rest for g in gens]
        progress.advance(len(generations), sum(len(g.token_ids) for g in generations))
        return generations

    async def _request(self, client: httpx.AsyncClient, slots: asyncio.Semaphore, body: dict,
                       prefill: str | None) -> list[Generation]:
        for attempt in range(self.config.max_retries + 1):
            async with slots:
                self.requests_sent += 1
                try:
                    response = await client.post(self.url, json=body)
                except (httpx.TimeoutException, httpx.TransportError) as err:
                    failure, status, wait = f"{type(err).__name__}: {err}", None, None
                    if self.endpoint.alive is not None and not await asyncio.to_thread(self.endpoint.alive):
                        raise EngineDied(self._describe(f"is gone ({failure})")) from err
                else:
                    if response.status_code < 400:
                        reply = response.json()
                        prompt_tokens = (reply.get("usage") or {}).get("prompt_tokens")  # one prompt for all choices
                        return [self._generation(choice, prefill, prompt_tokens) for choice in reply["choices"]]
                    failure = f"HTTP {response.status_code}: {self._server_message(response)}"
                    status = response.status_code
                    if status not in RETRY_STATUSES:
                        raise EndpointError(self._describe(f"refused the request ({failure})"), status)
                    wait = self._retry_after(response)
            if attempt < self.config.max_retries:
                delay = wait if wait is not None else min(self.config.retry_backoff * 2 ** attempt, MAX_BACKOFF)
                log.info("model '%s': %s; retry %d of %d in %.1f s", self.config.name, failure, attempt + 1,
                         self.config.max_retries, delay)
                await asyncio.sleep(delay)
        raise EndpointError(self._describe(f"failed {self.config.max_retries + 1} times; last: {failure}"), status)

    def _generation(self, choice: dict, prefill: str | None, prompt_tokens: int | None) -> Generation:
        text = choice["message"].get("content") or ""
        if prefill is not None and text.startswith(prefill):
            # llama.cpp's server echoes the prefilled text before its continuation, and a folded reply
            # repeats it (its log-probs then stay in); vLLM's continuation does not repeat it.
            text = text[len(prefill):]
        tokens = (choice.get("logprobs") or {}).get("content") or []
        stopped = choice.get("finish_reason") == "stop"
        if "stop_reason" in choice:  # vLLM: the token that ended it is listed unless a stop string did
            hidden_last = stopped and not isinstance(choice["stop_reason"], str)
        else:  # llama.cpp lists its end-of-sequence token as '', other servers by a text not shown
            hidden_last = stopped and tokens and (not tokens[-1]["token"] or not text.endswith(tokens[-1]["token"]))
        if hidden_last and tokens:
            tokens = tokens[:-1]  # left out, as the transformers backend leaves it out
        if tokens and all(t["token"].startswith("token_id:") for t in tokens):
            ids = [int(t["token"][9:]) for t in tokens]
        else:
            ids = [t["id"] for t in tokens] if all("id" in t for t in tokens) else []
        return Generation(text=text, token_ids=ids, token_logprobs=[t["logprob"] for t in tokens],
                          finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                          prompt_tokens=prompt_tokens)

    def _server_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            message = response.text
        else:
            # {"error": {"message": …}} (OpenAI, llama.cpp), {"message": …} (older vLLM), {"error": "…"}
            error = body.get("error", body) if isinstance(body, dict) else body
            message = error.get("message", error) if isinstance(error, dict) else error
        message = str(message)[:500]
        return message.replace(self._key, "***") if self._key else message

    def _retry_after(self, response: httpx.Response) -> float | None:
        try:
            return min(float(response.headers["retry-after"]), MAX_BACKOFF)
        except (KeyError, ValueError):
            return None

    def _describe(self, what: str) -> str:
        return f"model '{self.config.name}' ('{self.endpoint.model}' at {self.endpoint.base_url}): the endpoint {what}"
