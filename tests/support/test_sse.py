"""The test-side SSE reader against bytes split the way a network splits them."""

import socket
import threading

import pytest

from tests.support.sse import SseStream, parse_sse

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(text: str) -> bytes:
    data = text.encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.fixture
def serve_bytes():
    """Start a one-shot loopback server that sends the given pieces, one send() each; returns its URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def start(pieces, close: bool = False) -> str:
        def answer():
            conn, _ = listener.accept()
            conn.recv(65536)
            for piece in pieces:
                conn.sendall(piece)
            if close:
                conn.close()
            else:
                threading.Event().wait(5)  # keep the connection open, as a keep-alive proxy does

        threading.Thread(target=answer, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    listener.close()


def test_parse_sse_reads_a_body_with_or_without_the_final_blank_line():
    body = 'retry: 3000\n\n: hello\n\nevent: delta\ndata: {"a":\ndata: 1}\n\nevent: done\ndata: {"b": 2}'
    assert parse_sse(body) == [("delta", {"a": 1}), ("done", {"b": 2})]
    assert parse_sse(["data: [1]", ""]) == [(None, [1])]


def test_stream_undoes_chunks_split_anywhere_and_sees_the_terminating_chunk(serve_bytes):
    wire = HEAD + chunk("retry: 3000\n\n") + chunk(": heartbeat\n\n") + chunk('id: 7\nevent: log\ndata: {"é": 1}\n\n')
    wire += chunk("id: 8\ndata: x\n") + chunk('data: "y"\n\n') + b"0\r\n\r\n"
    cut = wire.index("é".encode()) + 1  # inside a UTF-8 character
    url = serve_bytes([wire[:cut], wire[cut:cut + 3], wire[cut + 3:]])
    stream = SseStream(url, "/stream", {}, timeout=5)
    try:
        assert stream.status == 200
        first = stream.next_event()
        assert (first.id, first.event, first.json()) == ("7", "log", {"é": 1})
        second = stream.next_event()
        assert (second.id, second.data) == ("8", ["x", '"y"'])
        assert stream.next_event() is None
        assert stream.ended and not stream.closed
        assert stream.retry == 3000 and stream.comments == ["heartbeat"]
    finally:
        stream.close()


def test_a_cut_stream_is_closed_not_ended(serve_bytes):
    url = serve_bytes([HEAD + chunk("id: 1\ndata: 1\n\n") + b"5\r\nid: "], close=True)
    stream = SseStream(url, "/stream", {}, timeout=5)
    try:
        assert stream.next_event().id == "1"
        assert stream.next_event() is None
        assert stream.closed and not stream.ended
    finally:
        stream.close()


def test_waiting_longer_than_the_timeout_raises(serve_bytes):
    stream = SseStream(serve_bytes([HEAD + chunk("retry: 1\n\n")]), "/stream", {}, timeout=5)
    try:
        assert stream.receive_until(lambda: stream.retry is not None, timeout=1)
        with pytest.raises(TimeoutError):
            stream.next_event(timeout=0.2)
    finally:
        stream.close()
