"""An OpenAI-compatible stub server for tests, benchmarks and trying the HTTP backend without a GPU.

It speaks `/v1/chat/completions` and `/v1/completions` on 127.0.0.1, answers every request
deterministically (the task's opening line, found in the prompt, then words of the prompt's
text; question-answer lines when the prompt asks for questions; a line "Educational score: N",
N a hash of the prompt, when it asks for one), honours `max_tokens`
(counting words as tokens) and vLLM's `continue_final_message`, and can inject faults in the
order requests arrive: an HTTP status such as "429" (with Retry-After), "500" or "503", or "slow"
(answers after `slow_s`).

    python -m flows.demo.stub_server --port 8000 --latency 0.2
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import zlib
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_OPENING = re.compile(r'line\s+"([^"\n]+)"')


class StubServer:
    def __init__(self, *, port: int = 0, latency_s: float = 0.0, faults: list[str | None] | None = None,
                 retry_after: str | None = "0.05", slow_s: float = 5.0) -> None:
        self.latency_s = latency_s
        self.faults = deque(faults or [])
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []
        self.started_at: list[float] = []
        self.httpd = _Server(("127.0.0.1", port), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="stub-openai-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_fault(self, body: dict) -> str | None:
        with self.lock:
            self.requests += 1
            self.bodies.append(body)
            self.started_at.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.faults.popleft() if self.faults else None

    def done(self) -> None:
        with self.lock:
            self.in_flight -= 1


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the listen backlog (socketserver's default of 5 resets bursts of connections)


def answer(prompt: str, max_tokens: int, continue_final: str | None) -> tuple[str, str, int]:
    """(text, finish_reason, completion tokens): deterministic, built from the prompt's words."""
    match = _OPENING.search(prompt)
    opening = match.group(1) if match else ""
    text_part = prompt.split("Text:", 1)[-1] if "Text:" in prompt else prompt.split("Passage:", 1)[-1]
    words = [w for w in text_part.split() if w.isalpha()] or ["text"]
    if "Educational score:" in prompt:  # an annotation prompt (classifiers.annotate): a score that is noise
        body = f"{' '.join(words[:12])}.\nEducational score: {zlib.crc32(prompt.encode()) % 6}"
    elif "question" in opening.lower():
        sentences = [" ".join(words[i:i + 8]) for i in range(0, min(len(words), 64), 8)]
        body = "\n".join(f"- Question: What does the text say about {s.split()[0]}? Answer: It says {s}."
                         for s in sentences)
    else:
        body = " ".join(reversed(words[:300])) + "."
    tokens = body.split(" ")
    finish = "stop"
    if len(tokens) > max_tokens:
        tokens, finish = tokens[:max_tokens], "length"
    body = " ".join(tokens)
    if continue_final is not None:  # the client prefilled the opening: return only the rest
        return body, finish, len(tokens)
    return f"{opening}\n{body}" if opening else body, finish, len(tokens)


def _handler(server: StubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            fault = server.next_fault(body)
            try:
                time.sleep(server.latency_s)
                if fault == "429":
                    headers = {"Retry-After": server.retry_after} if server.retry_after is not None else {}
                    return self._send(429, {"error": {"message": "rate limited"}}, headers)
                if fault and fault.isdigit():
                    return self._send(int(fault), {"error": {"message": "injected failure"}})
                if fault == "slow":
                    time.sleep(server.slow_s)
                self._complete(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout): nothing to answer
            finally:
                server.done()

        def _complete(self, body: dict) -> None:
            chat = self.path.endswith("/chat/completions")
            if not chat and not self.path.endswith("/completions"):
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            if chat:
                messages = body.get("messages", [])
                prompt = "\n".join(m["content"] for m in messages if m["role"] != "assistant")
                final = messages[-1]["content"] if body.get("continue_final_message") else None
            else:
                prompt, final = body.get("prompt", ""), None
            text, finish, n = answer(prompt, int(body.get("max_tokens") or 256), final)
            choice = {"index": 0, "finish_reason": finish}
            choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
            self._send(200, {"id": f"stub-{server.requests}", "object": "chat.completion" if chat else "text_completion",
                             "model": body.get("model"), "choices": [choice],
                             "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": n,
                                       "total_tokens": len(prompt.split()) + n}})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    args = parser.parse_args()
    with StubServer(port=args.port, latency_s=args.latency) as server:
        print(f"stub OpenAI-compatible server at {server.url} (Ctrl-C stops it)")
        try:
            server.thread.join()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
