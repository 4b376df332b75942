"""A local stand-in for LLM HTTP APIs, for tests.

`FakeLLMServer` speaks two wire formats, picked by request path:

* OpenAI chat completions: ``POST .../chat/completions``
* Anthropic messages: ``POST .../v1/messages``

and streams (server-sent events, chunked transfer) when the request body has
``"stream": true``. Replies are scripted in a provider-neutral form with
`queue_reply` and rendered in whichever format the request used, so one script
serves both providers. Streamed replies are cut into many small chunks: text
word by word, tool-call arguments in several pieces, and each event split in
two writes so clients must reassemble lines.

Usage::

    with FakeLLMServer() as server:
        server.queue_reply(text="hello", input_tokens=7, output_tokens=2)
        server.fail_next(429, n=1, headers={"Retry-After": "0"})
        ...  # point a provider at server.url (OpenAI: server.url + "/v1")
        server.requests[-1].json["model"]

When nothing is queued the server answers with the text "ok".
"""

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OPENAI_FINISH_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class ScriptedReply:
    """A provider-neutral reply.

    tool_calls items are dicts with "name", "arguments" (a dict, or a string
    sent verbatim to imitate broken model output) and optionally "id".
    stop_reason uses the neutral names end_turn / tool_use / max_tokens; when
    None it is tool_use if there are tool calls, else end_turn.
    """

    text: str = ""
    tool_calls: list[dict] = field(default_factory=list)
    input_tokens: int = 10
    output_tokens: int = 5
    stop_reason: str | None = None
    delay: float = 0.0  # seconds to wait before answering, to provoke client timeouts

    @property
    def neutral_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if self.tool_calls else "end_turn"

    def calls(self) -> list[tuple[str, str, str]]:
        """(id, name, arguments as a JSON string) for each tool call."""
        result = []
        for number, call in enumerate(self.tool_calls, start=1):
            arguments = call.get("arguments", {})
            encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
            result.append((call.get("id") or f"toolu_fake_{number}", call["name"], encoded))
        return result


@dataclass
class ErrorReply:
    status: int
    body: dict | str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RawStream:
    """Server-sent event text written verbatim, one chunk per item."""

    events: list[str]
    complete: bool = True  # False: drop the connection instead of ending the body


class FakeLLMServer:
    def __init__(self):
        self.requests: list[RecordedRequest] = []
        self._replies: deque = deque()
        self._failures: deque = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> "FakeLLMServer":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        # A short poll interval keeps stop() quick; the default makes it take 0.5s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting -------------------------------------------------------

    def queue_reply(self, text: str = "", tool_calls: list[dict] | None = None, **options) -> ScriptedReply:
        """Queue a reply; options are the other ScriptedReply fields."""
        reply = ScriptedReply(text=text, tool_calls=list(tool_calls or []), **options)
        with self._lock:
            self._replies.append(reply)
        return reply

    def queue_stream(self, events: list[str], complete: bool = True) -> None:
        """Queue a hand-written event stream, for cases the scripted form cannot
        express (error events, truncated streams)."""
        with self._lock:
            self._replies.append(RawStream(list(events), complete))

    def fail_next(self, status: int, n: int = 1, body=None, headers: dict | None = None) -> None:
        """Answer the next n requests with `status`, ahead of any queued replies.

        body may be a dict (sent as JSON) or a string; by default it is an error
        object that both OpenAI- and Anthropic-style clients can read.
        """
        if body is None:
            body = {"type": "error", "error": {"type": "fake_error", "message": f"fake failure {status}"}}
        with self._lock:
            self._failures.extend(ErrorReply(status, body, dict(headers or {})) for _ in range(n))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._replies.clear()
            self._failures.clear()

    def _next_reply(self, request: RecordedRequest):
        with self._lock:
            self.requests.append(request)
            if self._failures:
                return self._failures.popleft()
            if self._replies:
                return self._replies.popleft()
        return ScriptedReply(text="ok")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, like real APIs

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        request = RecordedRequest(
            method="POST",
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length),
        )
        reply = self.server.fake._next_reply(request)
        try:
            self._answer(request, reply)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired during a delay).
            self.close_connection = True

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def _answer(self, request: RecordedRequest, reply) -> None:
        if isinstance(reply, ErrorReply):
            self._send_body(reply.status, reply.body, reply.headers)
            return
        if isinstance(reply, RawStream):
            self._send_stream(reply.events, reply.complete)
            return
        time.sleep(reply.delay)
        wire_format = _wire_format(request.path)
        if wire_format is None:
            self._send_body(404, {"error": {"message": f"no such endpoint {request.path}"}})
            return
        body = request.json or {}
        model = body.get("model", "")
        if body.get("stream"):
            self._send_stream(wire_format.stream(reply, model))
        else:
            self._send_body(200, wire_format.body(reply, model))

    def _send_body(self, status: int, body, headers: dict | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: list[str], complete: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            data = event.encode()
            # Two writes per event, so a line is split across network reads.
            middle = len(data) // 2
            for piece in (data[:middle], data[middle:]):
                if piece:  # an empty chunk would end the body early
                    self._write_chunk(piece)
        if complete:
            self._write_chunk(b"")  # the zero-length chunk ends the body
        else:
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _wire_format(path: str):
    path = path.split("?", 1)[0]
    if path.endswith("/chat/completions"):
        return OpenAIFormat
    if path.endswith("/messages"):
        return AnthropicFormat
    return None


def sse(data, event: str | None = None) -> str:
    """One server-sent event; dict data is JSON-encoded."""
    text = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n"


def split_words(text: str) -> list[str]:
    """Word-sized pieces that join back into the text."""
    return re.findall(r"\S+\s*|\s+", text)


def split_in_three(text: str) -> list[str]:
    step = max(len(text) // 3, 1)
    pieces = [text[:step], text[step : 2 * step], text[2 * step :]]
    return [piece for piece in pieces if piece]


def _json_object(text: str) -> dict:
    # A non-streamed Anthropic reply always carries a parsed object, so broken
    # scripted arguments can only be delivered as an empty one.
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class OpenAIFormat:
    @staticmethod
    def body(reply: ScriptedReply, model: str) -> dict:
        message = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                for call_id, name, arguments in reply.calls()
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": OpenAIFormat.finish_reason(reply)}],
            "usage": OpenAIFormat.usage(reply),
        }

    @staticmethod
    def stream(reply: ScriptedReply, model: str) -> list[str]:
        def chunk(delta: dict, finish_reason=None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [choice]})

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in split_words(reply.text)]
        for index, (call_id, name, arguments) in enumerate(reply.calls()):
            function = {"name": name, "arguments": ""}
            opening = {"index": index, "id": call_id, "type": "function", "function": function}
            events.append(chunk({"tool_calls": [opening]}))
            events += [
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in split_in_three(arguments)
            ]
        events.append(chunk({}, OpenAIFormat.finish_reason(reply)))
        # With stream_options.include_usage the counts come last, with no choices.
        events.append(sse({"id": "chatcmpl-fake", "choices": [], "usage": OpenAIFormat.usage(reply)}))
        events.append(sse("[DONE]"))
        return events

    @staticmethod
    def finish_reason(reply: ScriptedReply) -> str:
        return OPENAI_FINISH_REASONS.get(reply.neutral_stop_reason, reply.neutral_stop_reason)

    @staticmethod
    def usage(reply: ScriptedReply) -> dict:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }


class AnthropicFormat:
    @staticmethod
    def body(reply: ScriptedReply, model: str) -> dict:
        content = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [
            {"type": "tool_use", "id": call_id, "name": name, "input": _json_object(arguments)}
            for call_id, name, arguments in reply.calls()
        ]
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reply.neutral_stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
        }

    @staticmethod
    def stream(reply: ScriptedReply, model: str) -> list[str]:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
        }
        events = [_anthropic_event("message_start", message=message), _anthropic_event("ping")]
        blocks = []
        if reply.text:
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in split_words(reply.text)]
            blocks.append((start, deltas))
        for call_id, name, arguments in reply.calls():
            start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            pieces = split_in_three(arguments)
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
            blocks.append((start, deltas))
        for index, (start, deltas) in enumerate(blocks):
            events += _anthropic_block(index, start, deltas)
        stop = {"stop_reason": reply.neutral_stop_reason, "stop_sequence": None}
        usage = {"output_tokens": reply.output_tokens}
        events.append(_anthropic_event("message_delta", delta=stop, usage=usage))
        events.append(_anthropic_event("message_stop"))
        return events


def _anthropic_event(kind: str, **data) -> str:
    return sse({"type": kind, **data}, event=kind)


def _anthropic_block(index: int, start: dict, deltas: list[dict]) -> list[str]:
    events = [_anthropic_event("content_block_start", index=index, content_block=start)]
    events += [_anthropic_event("content_block_delta", index=index, delta=delta) for delta in deltas]
    events.append(_anthropic_event("content_block_stop", index=index))
    return events
