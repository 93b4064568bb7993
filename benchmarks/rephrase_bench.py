"""Rephrase throughput: prompt and generated tokens/s of the local backend, and requests in
flight and requests/s of the HTTP backend.

Local: wiki-task prompts built from the machine's Debian handbook pages (chunks of 512
tokens), run through `LocalBackend` at several batch sizes; a first pass with
max_new_tokens=1 measures prefill (prompt tokens/s), the full pass the rest (generated
tokens/s). Without --model a tiny demo model is built (the quick start's); give a real causal
LM directory to measure that instead (`--device cuda` on a GPU).

HTTP: the OpenAI-compatible stub server answering after --latency seconds (standing in for
a server's time per request), or a real --endpoint, at several concurrency limits. --peers
sends the same requests through the clients the backend could have used instead, without
retries: httpx with one pool for all connections, and the `openai` package (pip install openai)
with its one pool and with the backend's pools of POOL_SIZE.

    .venv/bin/python benchmarks/rephrase_bench.py [--model DIR] [--chunks 32] [--threads 1]
    .venv/bin/python benchmarks/rephrase_bench.py --skip-local --endpoint http://localhost:8000/v1 --served-model NAME
    .venv/bin/python benchmarks/rephrase_bench.py --skip-local --latency 0 --concurrency 8 64 --peers
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import torch

from flows.demo.sample_crawl.pages import visible_lines
from flows.demo.sample_crawl.sources import handbook_docs
from curation.synthetic.backends.base import GenerationRequest, PromptStyle
from curation.synthetic.backends.http import POOL_SIZE, HttpBackend
from curation.synthetic.backends.local import LocalBackend
from curation.synthetic.chunking import HFTokenCounter, chunk_documents
from curation.synthetic.config import PLAIN_TEMPLATE, HttpBackendConfig, LocalBackendConfig
from flows.demo.demo_model import build_demo_model
from curation.synthetic.sampling import chunk_seed
from curation.synthetic.tasks import TASKS, load_prompt


def handbook_texts(n: int) -> list[str]:
    docs = [d for d in handbook_docs() if d.language == "en"][:n]
    return ["\n".join(visible_lines(d.path.read_text(errors="replace"))) for d in docs]


def wiki_requests(chunks: list[str], max_new_tokens: int) -> list[GenerationRequest]:
    prompt = load_prompt("wiki")
    return [GenerationRequest(id=f"c{i}", system=prompt.system, user=prompt.user_message(c), opening=prompt.opening,
                              max_new_tokens=max_new_tokens, seed=chunk_seed(f"c{i}", 0)) for i, c in enumerate(chunks)]


def timed_generate(backend: LocalBackend, requests: list[GenerationRequest]) -> tuple[float, int, int]:
    backend.prompt_tokens = backend.generated_tokens = 0
    started = time.perf_counter()
    for _ in backend.generate(requests):
        pass
    return time.perf_counter() - started, backend.prompt_tokens, backend.generated_tokens


def bench_local(args: argparse.Namespace, work: Path) -> None:
    texts = handbook_texts(60)
    model = args.model
    if model is None:
        started = time.perf_counter()
        model = str(build_demo_model(texts, work / "demo-model", train_steps=60))
        print(f"demo model built in {time.perf_counter() - started:.1f} s (a 2-layer Llama, hidden 64, vocab 2048)")
    config = LocalBackendConfig(model=model, tokenizer=args.tokenizer, device=args.device, batch_size=1)
    backend = LocalBackend(config, PromptStyle(prefill=True, plain_template=PLAIN_TEMPLATE), temperature=0.5, top_p=0.9)
    counter = HFTokenCounter(backend.tokenizer)
    chunks = [c.text for doc in chunk_documents(texts, TASKS["wiki"].max_input_tokens, counter) for c in doc]
    chunks = [c for c in chunks if len(c) > 1000][: args.chunks]
    print(f"\nlocal backend: {len(chunks)} wiki prompts (~512-token chunks), max_new_tokens {args.new_tokens}, "
          f"{torch.get_num_threads()} torch thread(s), device {backend.device}")
    print("| batch | prompt tok/s (prefill) | generated tok/s (decode) | chunks/s |\n|---:|---:|---:|---:|")
    timed_generate(backend, wiki_requests(chunks[:2], 2))  # warm-up
    for batch in args.batch_sizes:
        backend.config = LocalBackendConfig(model=model, tokenizer=args.tokenizer, device=args.device, batch_size=batch)
        prefill_s, prompt_tokens, _ = timed_generate(backend, wiki_requests(chunks, 1))
        total_s, _, generated = timed_generate(backend, wiki_requests(chunks, args.new_tokens))
        decode_s = max(total_s - prefill_s, 1e-9)
        print(f"| {batch} | {prompt_tokens / prefill_s:,.0f} | {(generated - len(chunks)) / decode_s:,.0f} "
              f"| {len(chunks) / total_s:.2f} |")


@contextlib.contextmanager
def stub_server_process(latency: float) -> Iterator[str]:
    """The stub server in its own process, so that its threads do not compete with the client
    for this process's GIL; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "flows.demo.stub_server", "--port", str(port),
                               "--latency", str(latency)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the stub server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait()


def bench_http(args: argparse.Namespace) -> None:
    prompt_chunks = [f"Chunk {i}: " + "The package manager keeps a record of every file. " * 20 for i in range(args.requests)]
    requests = wiki_requests(prompt_chunks, 128)
    where = args.endpoint or f"the stub server ({args.latency * 1000:.0f} ms a request, its own process)"
    print(f"\nHTTP backend: {len(requests)} requests to {where}")
    print("| concurrency | requests/s | client CPU ms/request | mean in flight | max in flight | retries | failed |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(stub_server_process(args.latency))
        for concurrency in args.concurrency:
            config = HttpBackendConfig(endpoint=endpoint, model=args.served_model or "stub", concurrency=concurrency,
                                       batch_size=64)
            backend = HttpBackend(config, PromptStyle(prefill=False, plain_template=PLAIN_TEMPLATE),
                                  temperature=0.5, top_p=0.9)
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in backend.generate(requests):
                pass
            seconds, cpu_ms = time.perf_counter() - started, (time.process_time() - cpu_started) * 1000 / len(requests)
            stats = backend.stats
            print(f"| {concurrency} | {len(requests) / seconds:,.1f} | {cpu_ms:.2f} | {stats.in_flight_seconds / seconds:.1f} "
                  f"| {stats.max_in_flight} | {sum(stats.retries.values())} | {sum(stats.failed.values())} |")
        if args.peers:
            bodies = [backend.request_body(r) for r in requests]
            print("\nthe same requests through other clients (no retries, no result batching):")
            print("| client | concurrency | requests/s | client CPU ms/request |\n|---|---:|---:|---:|")
            for concurrency in args.concurrency:
                for name, (rate, cpu_ms) in asyncio.run(peer_rates(endpoint, bodies, concurrency)).items():
                    print(f"| {name} | {concurrency} | {rate:,.1f} | {cpu_ms:.2f} |")


async def peer_rates(endpoint: str, bodies: list[tuple[str, dict]],
                     concurrency: int) -> dict[str, tuple[float, float]]:
    """Requests/s and client CPU ms a request of each peer client with `concurrency` requests in
    flight: plain httpx and the openai package, each with one pool of all connections and with the
    backend's pools of POOL_SIZE. CPU time is this process's: the stub server runs in its own."""
    try:
        import httpx2
        import openai
    except ImportError:
        httpx2 = openai = None

    def httpx_client(limits: httpx.Limits) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=endpoint, limits=limits, timeout=300)

    def openai_client(limits: httpx.Limits) -> object:
        return openai.AsyncOpenAI(base_url=endpoint, api_key="unused", max_retries=0, http_client=httpx2.AsyncClient(
            limits=httpx2.Limits(max_connections=limits.max_connections,
                                 max_keepalive_connections=limits.max_keepalive_connections), timeout=300))

    kinds = [("httpx", httpx_client, _httpx_send)] + ([("openai", openai_client, _openai_send)] if openai else [])
    rates = {}
    for kind, make, send in kinds:
        for pools in sorted({1, math.ceil(concurrency / POOL_SIZE)}):
            per_pool = math.ceil(concurrency / pools)
            limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(make(limits)) for _ in range(pools)]
                name = f"{kind}, one pool" if pools == 1 else f"{kind}, pools of {per_pool}"
                rates[name] = await _rate(clients, send, bodies, concurrency)
    return rates if openai else rates | {"openai (not installed)": (math.nan, math.nan)}


async def _rate(clients: list, send: Callable[[object, str, dict], Awaitable[str]], bodies: list[tuple[str, dict]],
                concurrency: int) -> tuple[float, float]:
    slots: asyncio.Queue = asyncio.Queue()
    for k in range(concurrency):  # as the backend hands out its slots
        slots.put_nowait(clients[k % len(clients)])

    async def one(path: str, body: dict) -> None:
        client = await slots.get()
        try:
            assert await send(client, path, body)
        finally:
            slots.put_nowait(client)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(path, body) for path, body in bodies))
    return len(bodies) / (time.perf_counter() - started), (time.process_time() - cpu_started) * 1000 / len(bodies)


async def _httpx_send(client: httpx.AsyncClient, path: str, body: dict) -> str:
    response = await client.post(path, json=body)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


async def _openai_send(client, path: str, body: dict) -> str:
    typed = ("model", "messages", "temperature", "top_p", "max_tokens", "seed")  # the rest goes as extra_body
    completion = await client.chat.completions.create(**{key: body[key] for key in typed},
                                                      extra_body={k: v for k, v in body.items() if k not in typed})
    return completion.choices[0].message.content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a causal LM directory (default: build the quick start's demo model)")
    parser.add_argument("--tokenizer", help="tokenizer directory when the model has none")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--endpoint", help="a real OpenAI-compatible server instead of the stub")
    parser.add_argument("--served-model", help="the model name the --endpoint serves")
    parser.add_argument("--latency", type=float, default=0.2, help="stub server seconds per request")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--peers", action="store_true", help="also time httpx with one pool and the openai package")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        if not args.skip_local:
            bench_local(args, Path(work))
        bench_http(args)


if __name__ == "__main__":
    main()
