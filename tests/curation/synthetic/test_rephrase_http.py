"""The HTTP backend against a real server on 127.0.0.1 that speaks the OpenAI protocol and
injects 429s, 500s and answers slower than the client's timeout."""

import time

import pytest

from curation.synthetic.backends.base import GenerationRequest, PromptStyle
from curation.synthetic.backends.http import HttpBackend, retry_after_seconds
from flows.demo.stub_server import StubServer
from curation.synthetic.config import PLAIN_TEMPLATE, HttpBackendConfig
from curation.synthetic.tasks import load_prompt

WIKI = load_prompt("wiki")


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(id=f"c{i}", system=WIKI.system, user=WIKI.user_message(f"Chunk {i} says that cats sleep."),
                              opening=WIKI.opening, max_new_tokens=40, seed=100 + i) for i in range(n)]


def _backend(server: StubServer, *, prefill: bool = False, **config) -> HttpBackend:
    settings = {"endpoint": server.url, "model": "stub", "backoff_s": 0.01} | config
    return HttpBackend(HttpBackendConfig(**settings), PromptStyle(prefill=prefill, plain_template=PLAIN_TEMPLATE),
                       temperature=0.5, top_p=0.9, seed=1)


def _run(backend: HttpBackend, requests: list[GenerationRequest]) -> dict:
    return {r.id: r for batch in backend.generate(requests) for r in batch}


def test_answers_with_bounded_concurrency_and_the_sampling_parameters():
    with StubServer(latency_s=0.05) as server:
        backend = _backend(server, concurrency=3, batch_size=4)
        results = _run(backend, _requests(12))
    assert sorted(results) == sorted(f"c{i}" for i in range(12))
    assert all(r.text.startswith(WIKI.opening + "\n") and r.finish_reason == "stop" and r.attempts == 1
               for r in results.values())
    assert results["c3"].generated_tokens == len(results["c3"].text.split("\n", 1)[1].split())
    assert server.max_in_flight == 3 and backend.stats.max_in_flight == 3
    body = server.bodies[0]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["model"]) == (0.5, 0.9, 40, "stub")
    assert body["seed"] in range(100, 112) and [m["role"] for m in body["messages"]] == ["system", "user"]


def test_429_500_and_timeouts_are_retried_with_backoff_and_retry_after():
    faults = ["429", "500", "slow", "502"]
    with StubServer(faults=faults, retry_after="0.3", slow_s=1.0) as server:
        backend = _backend(server, concurrency=1, timeout_s=0.4, max_retries=4)
        started = time.monotonic()
        results = _run(backend, _requests(3))
        elapsed = time.monotonic() - started
    assert all(r.error is None for r in results.values())
    assert backend.stats.retries == {"http_429": 1, "http_500": 1, "timeout": 1, "http_502": 1}
    assert results["c0"].attempts == 5 and results["c1"].attempts == 1
    assert backend.stats.attempts == server.requests == 7
    assert elapsed > 0.3 + 0.4  # Retry-After honoured, and the slow answer waited for up to the timeout


def test_a_request_that_keeps_failing_is_a_result_with_an_error():
    with StubServer(faults=["500", "500", "500"]) as server:
        backend = _backend(server, concurrency=1, max_retries=2)
        results = _run(backend, _requests(2))
    assert results["c0"].text is None and results["c0"].error == "http_500" and results["c0"].attempts == 3
    assert results["c1"].error is None
    assert backend.stats.failed == {"http_500": 1} and backend.stats.succeeded == 1


def test_client_errors_are_not_retried():
    with StubServer(faults=["400"]) as server:
        results = _run(_backend(server, concurrency=1), _requests(2))
    assert results["c0"].error == "http_400" and results["c0"].attempts == 1 and results["c1"].error is None


def test_requests_per_second_is_a_ceiling():
    with StubServer() as server:
        backend = _backend(server, concurrency=8, requests_per_second=20)
        _run(backend, _requests(11))
        starts = sorted(server.started_at)
    assert starts[-1] - starts[0] >= 10 / 20 - 0.05


def test_prefill_continues_the_final_message_and_the_completions_api():
    with StubServer() as server:
        results = _run(_backend(server, prefill=True), _requests(1))
        chat_body = server.bodies[-1]
        completions = _run(_backend(server, api="completions", prefill=True), _requests(1))
        completions_body = server.bodies[-1]
    assert chat_body["continue_final_message"] is True and chat_body["add_generation_prompt"] is False
    assert chat_body["messages"][-1] == {"role": "assistant", "content": WIKI.opening + "\n"}
    assert results["c0"].text.startswith(WIKI.opening + "\n") and results["c0"].text.count(WIKI.opening) == 1
    assert completions_body["prompt"].endswith(f"Assistant: {WIKI.opening}\n")
    assert completions["c0"].text.startswith(WIKI.opening + "\n")


@pytest.mark.parametrize("value, expected", [("2", 2.0), ("0.5", 0.5), (None, None), ("soon", None),
                                             ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_header(value, expected):
    assert retry_after_seconds(value) == expected
