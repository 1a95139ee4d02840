"""Real HTTP servers on 127.0.0.1 that speak the wire formats the official clients use.

- :class:`AnthropicServer`: ``POST /v1/messages``, ``GET /v1/models/{id}`` and the Message
  Batches endpoints (create, retrieve, results as JSONL), ``x-api-key`` checked, and the
  temperature rules of the API: version ``2026-10-21`` rejects ``temperature``; models listed in
  ``refuses_sampling`` reject it under any version with the API's 400.
- :class:`OllamaServer`: ``POST /api/chat`` and ``POST /api/show`` (404 for unknown models).
- :class:`OpenAIServer`: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Every request is recorded (path, headers, JSON body). Faults are queued per path and consumed in
order: ``{"status": 429, "headers": {"retry-after": "0.2"}}``, ``"drop"`` (close the connection
without answering), ``("hang", seconds)``, ``"malformed"`` (200 with a body that is not JSON),
``"refusal"``, ``"empty"`` (a completion with no text), ``("text", "...")`` (this answer text;
``("cut_text", "...")`` the same stopped at the token limit; ``("thinking_cut", "...")`` a thinking
model stopped at the token limit while reasoning, the text in Ollama's ``thinking`` or vLLM's
``reasoning_content`` field and no answer),
``"cut"`` (the usual answer cut off in its description, with the API's stop reason for the token
limit: Anthropic ``max_tokens``, Ollama and OpenAI ``length``).
The server counts successful completions in ``ok``, and the most requests it held at once in
``max_in_flight``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def client_timeout(fault: Any) -> float:
    """The client timeout for a test that injects ``fault``: a third of a ``("hang", s)`` fault, so the
    hang times out, and long otherwise, so that on a busy machine the retry itself does not time out
    (a 1 s timeout for every fault made a third attempt of a dropped connection)."""
    return fault[1] / 3 if isinstance(fault, tuple) and fault[0] == "hang" else 30.0


def default_answer(body: dict[str, Any], n: int) -> str:
    """A valid visual-prompt JSON answer that varies with the request."""
    temp = body.get("temperature", (body.get("options") or {}).get("temperature"))
    return json.dumps({
        "title": f"Violet harbour {n}",
        "image_prompt": "a quiet harbour at dusk, violet fog over dark water, a single lantern on a wooden pier, "
                        "soft golden light, long exposure photograph",
        "negative_prompt": "text, watermark, people",
        "palette": ["violet", "slate blue", "amber"],
        "description": f"A slow minor-key clip becomes a foggy harbour; the lantern is the melody (t={temp}).",
    })


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    allow_reuse_address = True


class WireServer:
    """Base: a threaded HTTP/1.1 server with request log, fault queues and a success counter."""

    def __init__(self, *, latency: float = 0.0, answer: Callable[[dict[str, Any], int], str] = default_answer):
        self.latency = latency
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.faults: dict[str, deque[Any]] = defaultdict(deque)
        self.ok = 0
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except json.JSONDecodeError:
                    body = {"_unparsed": raw.decode("utf-8", "replace")}
                rec = {"method": method, "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                with outer.lock:
                    outer.requests.append(rec)
                    queue = outer.faults.get(self.path.split("?")[0])
                    fault = queue.popleft() if queue else None
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    outer.route(self, method, body, fault)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WireServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def inject(self, path: str, *faults: Any) -> None:
        with self.lock:
            self.faults[path].extend(faults)

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST" and r["path"].split("?")[0] == path]

    # -- helpers for subclasses ---------------------------------------------------------------

    @staticmethod
    def send_json(h: BaseHTTPRequestHandler, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        WireServer.send_bytes(h, status, data, "application/json", headers)

    @staticmethod
    def send_bytes(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
                   headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("content-type", ctype)
        h.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def apply_transport_fault(self, h: BaseHTTPRequestHandler, fault: Any, error_body: Any) -> bool:
        """Handle faults that do not depend on the API; True when the request is answered."""
        if fault == "drop":
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass
            return True
        if isinstance(fault, tuple) and fault[0] == "hang":
            time.sleep(fault[1])
            h.close_connection = True
            return True
        if fault == "malformed":
            self.send_bytes(h, 200, b'{"id": "x", "content": [ {"type": "te', "application/json")
            return True
        if isinstance(fault, dict) and "status" in fault:
            self.send_json(h, fault["status"], error_body(fault), fault.get("headers"))
            return True
        return False

    def answer_text(self, fault: Any, body: dict[str, Any]) -> tuple[str, str]:
        """(text, how it ended: ``"end"``, ``"refusal"`` or ``"cut"`` at the token limit) for one
        successful completion."""
        if fault == "refusal":
            return "I can't help with that request.", "refusal"
        if fault == "empty":
            return "", "end"
        if isinstance(fault, tuple) and fault[0] in ("text", "cut_text", "thinking_cut"):
            return fault[1], {"text": "end", "cut_text": "cut"}.get(fault[0], fault[0])
        text = self.answer(body, next(self._ids))
        if fault == "cut":
            return text[: text.index("becomes") + 12], "cut"  # "... clip becomes a fog"
        return text, "end"

    def route(self, h: BaseHTTPRequestHandler, method: str, body: dict[str, Any], fault: Any) -> None:
        raise NotImplementedError


class AnthropicServer(WireServer):
    """The Anthropic Messages and Message Batches API, closely enough for ``AsyncAnthropic``."""

    def __init__(self, *, api_key: str = "sk-ant-test-0123456789abcdef", refuses_sampling: tuple[str, ...] = (),
                 unknown_models: tuple[str, ...] = (), batch_polls: int = 1, **kw: Any):
        super().__init__(**kw)
        self.api_key = api_key
        self.refuses_sampling = set(refuses_sampling)
        self.unknown_models = set(unknown_models)
        self.batch_polls = batch_polls
        self.batches: dict[str, dict[str, Any]] = {}
        self.cached_prefixes: set[str] = set()

    @staticmethod
    def _error(status: int, kind: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_{status}"}

    def _fault_error(self, fault: dict[str, Any]) -> dict[str, Any]:
        kinds = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error", 503: "api_error"}
        return self._error(fault["status"], kinds.get(fault["status"], "api_error"), fault.get("message", "injected"))

    def _message(self, params: dict[str, Any], version: str | None) -> tuple[int, dict[str, Any]]:
        """(status, body) for one Messages request, with the API's temperature rules."""
        model = params.get("model", "")
        if model in self.unknown_models:
            return 404, self._error(404, "not_found_error", f"model: {model}")
        sampling = [k for k in ("temperature", "top_p", "top_k") if k in params]
        if sampling and model in self.refuses_sampling:
            return 400, self._error(400, "invalid_request_error", f"`{sampling[0]}` is deprecated for this model.")
        if sampling and version != "2023-06-01":
            return 400, self._error(400, "invalid_request_error", f"{sampling[0]}: Extra inputs are not permitted")
        if not isinstance(params.get("max_tokens"), int):
            return 400, self._error(400, "invalid_request_error", "max_tokens: Field required")
        return 200, {}

    def _usage(self, params: dict[str, Any], text: str) -> dict[str, int]:
        system = params.get("system") or []
        sys_text = system if isinstance(system, str) else "".join(b.get("text", "") for b in system[:1])
        cached = isinstance(system, list) and bool(system) and "cache_control" in system[0]
        sys_tokens = len(sys_text.split())
        msg_tokens = sum(len(str(m.get("content", "")).split()) for m in params.get("messages", []))
        usage = {"input_tokens": msg_tokens + (0 if cached else sys_tokens), "output_tokens": len(text.split()),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if cached:
            with self.lock:
                hit = sys_text in self.cached_prefixes
                self.cached_prefixes.add(sys_text)
            usage["cache_read_input_tokens" if hit else "cache_creation_input_tokens"] = sys_tokens
        return usage

    def _reply(self, params: dict[str, Any], text: str, ended: str) -> dict[str, Any]:
        return {
            "id": f"msg_{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": params.get("model"),
            "content": [{"type": "text", "text": text}] if text else [],
            "stop_reason": {"refusal": "refusal", "cut": "max_tokens"}.get(ended, "end_turn"),
            "stop_sequence": None,
            "usage": self._usage(params, text),
        }

    def route(self, h: BaseHTTPRequestHandler, method: str, body: dict[str, Any], fault: Any) -> None:
        path = h.path.split("?")[0]
        sent = h.headers.get("x-api-key") or (h.headers.get("authorization") or "").removeprefix("Bearer ")
        if sent != self.api_key:
            self.send_json(h, 401, self._error(401, "authentication_error", "invalid x-api-key"))
            return
        if self.apply_transport_fault(h, fault, self._fault_error):
            return
        version = h.headers.get("anthropic-version")
        if method == "POST" and path == "/v1/messages":
            if self.latency:
                time.sleep(self.latency)
            status, err = self._message(body, version)
            if status != 200:
                self.send_json(h, status, err)
                return
            text, ended = self.answer_text(fault, body)
            reply = self._reply(body, text, ended)
            with self.lock:
                self.ok += 1
            self.send_json(h, 200, reply, {"request-id": reply["id"]})
        elif method == "GET" and path.startswith("/v1/models/"):
            model = path.rsplit("/", 1)[1]
            if model in self.unknown_models:
                self.send_json(h, 404, self._error(404, "not_found_error", f"model: {model}"))
            else:
                self.send_json(h, 200, {"type": "model", "id": model, "display_name": model,
                                        "created_at": "2026-01-01T00:00:00Z"})
        elif method == "POST" and path == "/v1/messages/batches":
            self._create_batch(h, body, version)
        elif method == "GET" and path.startswith("/v1/messages/batches/"):
            parts = path.split("/")
            batch = self.batches.get(parts[4])
            if batch is None:
                self.send_json(h, 404, self._error(404, "not_found_error", "batch not found"))
            elif len(parts) == 6 and parts[5] == "results":
                lines = "\n".join(json.dumps(r) for r in batch["results"]) + "\n"
                self.send_bytes(h, 200, lines.encode(), "application/binary")
            else:
                batch["polls"] += 1
                self.send_json(h, 200, self._batch_json(batch))
        else:
            self.send_json(h, 404, self._error(404, "not_found_error", f"no route {method} {path}"))

    def _create_batch(self, h: BaseHTTPRequestHandler, body: dict[str, Any], version: str | None) -> None:
        bid = f"msgbatch_{next(self._ids):06d}"
        results = []
        for req in body.get("requests", []):
            params = req["params"]
            status, err = self._message(params, version)
            if status != 200:
                results.append({"custom_id": req["custom_id"],
                                "result": {"type": "errored", "error": err}})
                continue
            text, ended = self.answer_text(None, params)
            results.append({"custom_id": req["custom_id"],
                            "result": {"type": "succeeded", "message": self._reply(params, text, ended)}})
            with self.lock:
                self.ok += 1
        self.batches[bid] = {"id": bid, "polls": 0, "results": results, "n": len(results)}
        self.send_json(h, 200, self._batch_json(self.batches[bid]))

    def _batch_json(self, batch: dict[str, Any]) -> dict[str, Any]:
        ended = batch["polls"] >= self.batch_polls
        ok = sum(r["result"]["type"] == "succeeded" for r in batch["results"])
        return {
            "id": batch["id"], "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {"processing": 0 if ended else batch["n"], "succeeded": ok if ended else 0,
                               "errored": batch["n"] - ok if ended else 0, "canceled": 0, "expired": 0},
            "created_at": "2026-11-26T00:00:00Z", "expires_at": "2026-11-27T00:00:00Z",
            "ended_at": "2026-11-26T00:01:00Z" if ended else None, "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.url}/v1/messages/batches/{batch['id']}/results" if ended else None,
        }


class OllamaServer(WireServer):
    """Ollama's ``/api/chat`` and ``/api/show``."""

    def __init__(self, *, models: tuple[str, ...] = ("llama3.2",), **kw: Any):
        super().__init__(**kw)
        self.models = set(models)

    def route(self, h: BaseHTTPRequestHandler, method: str, body: dict[str, Any], fault: Any) -> None:
        path = h.path.split("?")[0]
        if self.apply_transport_fault(h, fault, lambda f: {"error": f.get("message", "injected")}):
            return
        model = body.get("model", "")
        if path in ("/api/chat", "/api/show") and model not in self.models:
            self.send_json(h, 404, {"error": f"model '{model}' not found"})
            return
        if path == "/api/show":
            self.send_json(h, 200, {"modelfile": f"FROM {model}", "parameters": "", "template": "{{ .Prompt }}",
                                    "details": {"format": "gguf", "family": "llama"}, "model_info": {}})
            return
        if path != "/api/chat":  # what Ollama's Go router answers for a path it does not serve
            self.send_bytes(h, 404, b"404 page not found", "text/plain; charset=utf-8")
            return
        if self.latency:
            time.sleep(self.latency)
        text, ended = self.answer_text(fault, body)
        with self.lock:
            self.ok += 1
        n_in = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        thinking = ended == "thinking_cut"
        self.send_json(h, 200, {
            "model": model, "created_at": "2026-11-26T00:00:00Z",
            "message": {"role": "assistant", "content": "", "thinking": text} if thinking
            else {"role": "assistant", "content": text}, "done": True,
            "done_reason": "length" if ended in ("cut", "thinking_cut") else "stop",
            "total_duration": 1000, "prompt_eval_count": n_in, "eval_count": len(text.split()),
        })


class OpenAIServer(WireServer):
    """``/v1/chat/completions`` and ``/v1/models`` as vLLM / llama.cpp server answer them."""

    def __init__(self, *, models: tuple[str, ...] = ("qwen2.5-7b-instruct",), api_key: str | None = None,
                 rejects_response_format: bool = False, default_temperature_only: tuple[str, ...] = (),
                 rejects_max_tokens: tuple[str, ...] = (), **kw: Any):
        super().__init__(**kw)
        self.models = list(models)
        self.api_key = api_key
        self.rejects_response_format = rejects_response_format
        self.default_temperature_only = set(default_temperature_only)  # OpenAI's reasoning models
        self.rejects_max_tokens = set(rejects_max_tokens)  # the same models want max_completion_tokens

    def route(self, h: BaseHTTPRequestHandler, method: str, body: dict[str, Any], fault: Any) -> None:
        path = h.path.split("?")[0]
        if self.api_key is not None and h.headers.get("authorization") != f"Bearer {self.api_key}":
            self.send_json(h, 401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                              "code": "invalid_api_key"}})
            return
        if self.apply_transport_fault(h, fault, lambda f: {"error": {"message": f.get("message", "injected"),
                                                                    "type": "server_error"}}):
            return
        if method == "GET" and path == "/v1/models":
            self.send_json(h, 200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "local"} for m in self.models]})
            return
        if not (method == "POST" and path == "/v1/chat/completions"):
            self.send_json(h, 404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        model = body.get("model")
        if model not in self.models:
            self.send_json(h, 404, {"error": {"message": f"The model `{model}` does not exist.",
                                              "type": "invalid_request_error", "code": "model_not_found"}})
            return
        if model in self.default_temperature_only and body.get("temperature", 1) != 1:
            self.send_json(h, 400, {"error": {
                "message": f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                           "Only the default (1) value is supported.",
                "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}})
            return
        if model in self.rejects_max_tokens and "max_tokens" in body:
            self.send_json(h, 400, {"error": {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}})
            return
        if self.rejects_response_format and "response_format" in body:
            self.send_json(h, 400, {"error": {"message": "response_format is not supported",
                                              "type": "invalid_request_error"}})
            return
        if self.latency:
            time.sleep(self.latency)
        text, ended = self.answer_text(fault, body)
        refused = ended == "refusal"
        with self.lock:
            self.ok += 1
        n_in = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        self.send_json(h, 200, {
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "length" if ended in ("cut", "thinking_cut") else "stop",
                         "logprobs": None,
                         "message": {"role": "assistant", "content": None, "reasoning_content": text}
                         if ended == "thinking_cut" else
                         {"role": "assistant", "content": None if refused else text,
                          "refusal": text if refused else None}}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": len(text.split()),
                      "total_tokens": n_in + len(text.split())},
        })
