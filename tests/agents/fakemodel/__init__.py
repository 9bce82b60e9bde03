"""A fake model server on 127.0.0.1 for the real agent CLIs: it speaks a provider's
real streaming protocol (one module per protocol) and answers from a script of canned
steps that make real tool calls (read a file, then write one) and report usage.

Stateless by design: the step to answer is read from the request itself (how many
assistant turns its history already holds), so a retried request, a resumed session
or a CLI's extra call (a title, a routing question) never knocks the script off.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Step:
    """One model answer: some text, and at most one tool call in generic terms (the
    protocol names it as the CLI's own tool): ``read`` {path}, ``write`` {path,
    content}, ``edit`` {path, old, new}, ``shell`` {command}."""

    text: str = ""
    tool: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    thinking: str = ""
    input_tokens: int = 120
    output_tokens: int = 30
    cached_tokens: int = 0


DONE = Step(text="Done.")


class Protocol:
    """One provider's wire protocol. ``handle`` answers one POST (its path and JSON
    body) through ``reply``; the server has already refused it if told to fail."""

    name = "?"

    def handle(self, server: FakeModel, path: str, body: dict[str, Any],
               reply: Reply) -> None:
        raise NotImplementedError


class Reply:
    """The response being written: a JSON body, or server-sent events."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._h = handler
        self._streaming = False

    def json(self, obj: Any, status: int = 200,
             headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self._h.send_response(status)
        for name, value in (headers or {}).items():
            self._h.send_header(name, value)
        self._h.send_header("Content-Type", "application/json")
        self._h.send_header("Content-Length", str(len(data)))
        self._h.end_headers()
        self._h.wfile.write(data)

    def start_sse(self) -> None:
        self._h.send_response(200)
        self._h.send_header("Content-Type", "text/event-stream")
        self._h.send_header("Cache-Control", "no-cache")
        self._h.send_header("Connection", "close")
        self._h.end_headers()
        self._streaming = True

    def event(self, data: Any, name: str | None = None) -> None:
        """One SSE event (``event: name`` when given), flushed at once."""
        if not self._streaming:
            self.start_sse()
        text = data if isinstance(data, str) else json.dumps(data)
        chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        self._h.wfile.write(chunk.encode())
        self._h.wfile.flush()


class FakeModel:
    """The server: ``with FakeModel(protocol, steps) as model: model.url``.

    ``fail_status`` answers every POST with that HTTP status (and ``fail_headers``:
    e.g. a ``retry-after-ms`` a CLI honours); ``stall`` opens the stream and then
    says nothing (until the server stops)."""

    def __init__(self, protocol: Protocol,
                 steps: list[Step] | Callable[[int, dict[str, Any]], Step] | None = None, *,
                 fail_status: int | None = None, stall: bool = False,
                 fail_headers: dict[str, str] | None = None,
                 fail_times: int | None = None) -> None:
        self.protocol = protocol
        # A list is played in order; a function answers from the request itself (the
        # step's index and the body), for a conversation that depends on the prompt.
        self.script = steps if callable(steps) else None
        self.steps = [] if callable(steps) else list(steps or [])
        self._local = threading.local()
        self.fail_status = fail_status
        self.fail_headers = dict(fail_headers or {})
        # How many POSTs fail before the server answers again (None: all of them): an
        # outage that passes.
        self.fail_times = fail_times
        self._failed = 0
        self.stall = stall
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # method, path, body
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def step(self, index: int) -> Step:
        """The scripted answer number ``index`` (0-based); past the end, ``DONE``."""
        if self.script is not None:
            return self.script(index, getattr(self._local, "body", {}))
        return self.steps[index] if index < len(self.steps) else DONE

    def posts(self) -> list[dict[str, Any]]:
        """The bodies of the POSTs received so far."""
        return [body for method, _, body in self.requests if method == "POST"]

    def __enter__(self) -> FakeModel:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                model.requests.append(("HEAD", self.path, {}))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                model.requests.append(("GET", self.path, {}))
                Reply(self).json({"object": "list", "data": []})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                model.requests.append(("POST", self.path, body))
                reply = Reply(self)
                failing = model.fail_status is not None and (
                    model.fail_times is None or model._failed < model.fail_times)
                if failing:
                    model._failed += 1
                    reply.json({"error": {"type": "api_error", "code": model.fail_status,
                                          "message": "the fake model server fails on purpose",
                                          "status": "INTERNAL"}},
                               status=model.fail_status or 500, headers=model.fail_headers)
                    return
                if model.stall:
                    reply.start_sse()
                    model._stop.wait()
                    return
                model._local.body = body
                model.protocol.handle(model, self.path, body, reply)
                self.close_connection = True

        return Handler
