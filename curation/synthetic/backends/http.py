"""The HTTP backend: an OpenAI-compatible server (vLLM, NIM, TensorRT-LLM, llama.cpp server).

Requests run on an asyncio loop in a background thread with httpx: at most `concurrency` in
flight (slots handed out by a queue), at most `requests_per_second` started (aiolimiter, retries
included), each bounded by `timeout_s` from send to the whole answer. 429, 5xx, timeouts and
connection errors are retried with exponential backoff and seeded jitter, or after the server's
Retry-After; other 4xx fail at once. A request that still fails becomes a result with `error`
set: the stage counts its chunk as dropped, the run goes on.

The protocol client is httpx and a few lines of JSON, not the `openai` package, though that
speaks both endpoints used here and takes vLLM's fields through `extra_body`: it costs twice the
client CPU a request (2.4-2.8 ms against 1.1-1.3 ms for plain httpx, 8 in flight against the stub
server answering at once: `benchmarks/rephrase_bench.py --skip-local --latency 0 --concurrency 8 64
--peers`), and its own retries cannot serve here (backoff fixed at 0.5-8 s whatever `backoff_s`
and `max_backoff_s` say, jitter from the process-global `random`, no counts by reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import math
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
from aiolimiter import AsyncLimiter

from curation.synthetic.backends.base import (
    GenerationRequest, GenerationResult, PromptStyle, chat_messages, plain_prompt, prefill_text,
)
from curation.synthetic.chunking import ApproxTokenCounter, HFTokenCounter
from curation.synthetic.config import HttpBackendConfig

_DONE = object()
POOL_SIZE = 8  # connections per httpx client (see HttpBackend._run_all)
_FLUSH_SECONDS = 30.0  # answers are handed on at least this often, however few


@dataclass
class RequestStats:
    """Counts over the backend's lifetime: attempts, retries and failures by reason, concurrency."""

    attempts: int = 0
    succeeded: int = 0
    retries: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    #: Integral of requests in flight over time (request-seconds): its ratio to the wall time is
    #: the mean number in flight.
    in_flight_seconds: float = 0.0
    _changed: float = field(default_factory=time.monotonic)

    def _advance(self) -> None:
        now = time.monotonic()
        self.in_flight_seconds += self.in_flight * (now - self._changed)
        self._changed = now

    def start(self) -> None:
        self._advance()
        self.attempts += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def end(self) -> None:
        self._advance()
        self.in_flight -= 1

    def to_dict(self) -> dict:
        return {"attempts": self.attempts, "succeeded": self.succeeded, "retries": dict(sorted(self.retries.items())),
                "failed": dict(sorted(self.failed.items())), "max_in_flight": self.max_in_flight}


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class _Fatal(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HttpBackend:
    name = "http"

    def __init__(self, config: HttpBackendConfig, style: PromptStyle, *, temperature: float, top_p: float,
                 seed: int = 0) -> None:
        self.config = config
        self.style = style
        self.temperature, self.top_p = temperature, top_p
        self.rng = random.Random(seed)  # backoff jitter
        self.stats = RequestStats()
        if config.tokenizer:
            from transformers import AutoTokenizer

            self.token_counter = HFTokenCounter(AutoTokenizer.from_pretrained(config.tokenizer, local_files_only=True),
                                                name=config.tokenizer)
        else:
            self.token_counter = ApproxTokenCounter()
        self.headers = {}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ValueError(f"rephrase.http.api_key_env: environment variable {config.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"

    # ---------------------------------------------------------------------------- public

    def generate(self, requests: list[GenerationRequest]) -> Iterator[list[GenerationResult]]:
        """Answers in batches of `batch_size` (or what came in 30 s), in completion order, while
        requests keep flowing."""
        if not requests:
            return
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        thread = threading.Thread(target=self._thread_main, args=(requests, results.put, stop), daemon=True,
                                  name="ccforge-http-backend")
        thread.start()
        batch: list[GenerationResult] = []
        flushed = time.monotonic()
        try:
            while True:
                try:
                    item = results.get(timeout=1.0)
                except queue.Empty:
                    item = None
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    batch.append(item)
                # A full batch, or answers held for _FLUSH_SECONDS (a slow server): write them now.
                if len(batch) >= self.config.batch_size or (batch and time.monotonic() - flushed > _FLUSH_SECONDS):
                    yield batch
                    batch, flushed = [], time.monotonic()
            if batch:
                yield batch
        finally:
            stop.set()  # a consumer that stops early: no new requests are started
            thread.join(timeout=self.config.timeout_s + 1)

    def close(self) -> None:
        """Nothing to release: every `generate` call opens and closes its own connection pools."""

    def request_body(self, request: GenerationRequest) -> tuple[str, dict]:
        """The path and JSON body of one request."""
        body = {"model": self.config.model, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": request.max_new_tokens, "seed": request.seed}
        if self.config.api == "completions":
            return "/completions", body | {"prompt": plain_prompt(request, self.style)} | self.config.extra_body
        body["messages"] = chat_messages(request, self.style)
        if prefill_text(request, self.style):  # vLLM: continue the final (assistant) message
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        return "/chat/completions", body | self.config.extra_body

    # ----------------------------------------------------------------------------- async

    def _thread_main(self, requests: list[GenerationRequest], emit: Callable[[object], None],
                     stop: threading.Event) -> None:
        try:
            asyncio.run(self._run_all(requests, emit, stop))
        except BaseException as err:  # surfaced in the consuming thread
            emit(err)
        emit(_DONE)

    async def _run_all(self, requests: list[GenerationRequest], emit: Callable[[object], None],
                       stop: threading.Event) -> None:
        """Every request through a slot: `concurrency` slots, spread over small connection pools.

        Hand-written because it was measured faster: httpcore scans all of a pool's connections on
        every request event, which costs more than the request itself past a few dozen
        connections; pools of at most `POOL_SIZE` keep that flat. With 64 in flight against the
        stub server answering at once, one pool of 64 took 7.0-8.4 ms of client CPU a request
        (46-52 requests/s), pools of 8 took 1.4-2.2 ms (134-363 requests/s; the module
        docstring's command, 2 shared cores).
        """
        config = self.config
        # One acquisition per 1/rate seconds and bursts of one: the ceiling `requests_per_second` promises.
        limiter = AsyncLimiter(1, 1 / config.requests_per_second) if config.requests_per_second else None
        n_pools = math.ceil(config.concurrency / POOL_SIZE)
        per_pool = math.ceil(config.concurrency / n_pools)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        async with contextlib.AsyncExitStack() as stack:
            pools = [await stack.enter_async_context(httpx.AsyncClient(
                base_url=config.endpoint.rstrip("/"), headers=self.headers, limits=limits,
                timeout=httpx.Timeout(config.timeout_s))) for _ in range(n_pools)]
            slots: asyncio.Queue = asyncio.Queue()
            for k in range(config.concurrency):  # at most per_pool slots per pool
                slots.put_nowait(pools[k % n_pools])

            async def one(request: GenerationRequest) -> None:
                client = await slots.get()
                try:
                    if not stop.is_set():
                        emit(await self._with_retries(client, limiter, request))
                finally:
                    slots.put_nowait(client)

            await asyncio.gather(*(one(r) for r in requests))

    async def _with_retries(self, client: httpx.AsyncClient, limiter: AsyncLimiter | None,
                            request: GenerationRequest) -> GenerationResult:
        """Attempts until one succeeds, fails for good, or `max_retries` are spent.

        Hand-written, not tenacity: tenacity has no Retry-After and draws its jitter from the
        process-global `random` (seeding that would reach every other user of it). Given both as
        a custom wait, and the counts by reason as callbacks, it is left only this loop to run:
        tried so, it matched this one (1.9 against 1.8 ms of client CPU a request, within noise).
        """
        path, body = self.request_body(request)
        for attempt in range(self.config.max_retries + 1):
            if limiter is not None:
                await limiter.acquire()
            self.stats.start()
            try:
                result = await self._attempt(client, path, body, request)
            except _Retryable as err:
                reason, retry_after = err.reason, err.retry_after
            except _Fatal as err:
                self.stats.failed[err.reason] += 1
                return GenerationResult(id=request.id, text=None, error=err.reason, attempts=attempt + 1)
            else:
                self.stats.succeeded += 1
                return dataclasses.replace(result, attempts=attempt + 1)
            finally:
                self.stats.end()
            if attempt == self.config.max_retries:
                self.stats.failed[reason] += 1
                return GenerationResult(id=request.id, text=None, error=reason, attempts=attempt + 1)
            self.stats.retries[reason] += 1
            await asyncio.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.config.max_backoff_s, self.config.backoff_s * 2 ** attempt)
        return ceiling * (0.5 + 0.5 * self.rng.random())  # "equal jitter"

    async def _attempt(self, client: httpx.AsyncClient, path: str, body: dict,
                       request: GenerationRequest) -> GenerationResult:
        try:
            response = await asyncio.wait_for(client.post(path, json=body), self.config.timeout_s)
        except (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException) as err:
            raise _Retryable("timeout") from err
        except httpx.TransportError as err:
            raise _Retryable("connection_error") from err
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"http_{status}", retry_after_seconds(response.headers.get("retry-after")))
        if status != 200:
            raise _Fatal(f"http_{status}")
        try:
            data = response.json()
            choice = data["choices"][0]
            content = choice["text"] if self.config.api == "completions" else choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise _Fatal("bad_response") from err
        usage = data.get("usage") or {}
        return GenerationResult(id=request.id, text=self._with_prefill(request, content or ""),
                                finish_reason=choice.get("finish_reason"), prompt_tokens=usage.get("prompt_tokens"),
                                generated_tokens=usage.get("completion_tokens"))

    def _with_prefill(self, request: GenerationRequest, content: str) -> str:
        """Servers that continue the final message return only the continuation."""
        prefill = prefill_text(request, self.style)
        if not prefill or content.lstrip().startswith(request.opening):
            return content
        return prefill + content
