"""Retry and error behaviour shared by the HTTP providers, exercised over real
HTTP against the fake server (and against a closed port)."""

import socket
import time

import pytest

from app.agent.providers import Message, ProviderError, ProviderSettings, TextDelta, create_provider, http
from tests.agent.providers.fake_llm import sse

HI = [Message("user", "Hi")]
BOTH = pytest.mark.parametrize("name", ["openai", "anthropic"])


@BOTH
def test_retry_after_is_honoured_on_429(fake_llm, make_provider, name):
    fake_llm.fail_next(429, headers={"Retry-After": "0.3"})
    fake_llm.queue_reply(text="finally")
    # No backoff of our own, so any wait comes from the header.
    provider = make_provider(name, retry_backoff=0)

    started = time.monotonic()
    completion = provider.complete(HI, [])

    assert completion.content == "finally"
    assert time.monotonic() - started >= 0.3
    assert len(fake_llm.requests) == 2


def test_retry_after_is_capped(fake_llm, make_provider, monkeypatch):
    monkeypatch.setattr(http, "MAX_RETRY_AFTER", 0.05)
    fake_llm.fail_next(429, headers={"Retry-After": "3600"})

    started = time.monotonic()
    assert make_provider("openai").complete(HI, []).content == "ok"
    assert time.monotonic() - started < 2


@BOTH
def test_server_errors_are_retried_until_success(fake_llm, make_provider, name):
    fake_llm.fail_next(500, n=2)
    fake_llm.queue_reply(text="recovered")

    assert make_provider(name, max_retries=2).complete(HI, []).content == "recovered"
    assert len(fake_llm.requests) == 3
    # Each retry resends the same request.
    assert fake_llm.requests[0].json == fake_llm.requests[2].json


@BOTH
def test_client_errors_are_not_retried(fake_llm, make_provider, name):
    error = {"type": "invalid_request_error", "message": "model: unknown model"}
    fake_llm.fail_next(400, body={"error": error})

    with pytest.raises(ProviderError) as caught:
        make_provider(name).complete(HI, [])

    assert caught.value.status == 400
    assert str(caught.value) == f"{name}: upstream returned HTTP 400: model: unknown model"
    assert len(fake_llm.requests) == 1


def test_client_error_with_a_plain_string_error(fake_llm, make_provider):
    # Ollama-style error body.
    fake_llm.fail_next(404, body={"error": 'model "llama9" not found, try pulling it first'})
    with pytest.raises(ProviderError) as caught:
        make_provider("openai").complete(HI, [])
    expected = 'openai: upstream returned HTTP 404: model "llama9" not found, try pulling it first'
    assert str(caught.value) == expected


def test_client_error_without_a_json_body(fake_llm, make_provider):
    fake_llm.fail_next(403, body="<html>Forbidden</html>")
    with pytest.raises(ProviderError) as caught:
        make_provider("openai").complete(HI, [])
    assert str(caught.value) == "openai: upstream returned HTTP 403"
    assert caught.value.status == 403


@BOTH
def test_gives_up_after_max_retries(fake_llm, make_provider, name):
    fake_llm.fail_next(503, n=10)

    with pytest.raises(ProviderError) as caught:
        make_provider(name, max_retries=2).complete(HI, [])

    assert caught.value.status == 503
    assert "HTTP 503" in str(caught.value)
    assert "gave up after 3 attempts" in str(caught.value)
    assert len(fake_llm.requests) == 3


def test_zero_retries_means_one_attempt(fake_llm, make_provider):
    fake_llm.fail_next(500, n=2)
    with pytest.raises(ProviderError):
        make_provider("openai", max_retries=0).complete(HI, [])
    assert len(fake_llm.requests) == 1


def test_timeouts_are_retried(fake_llm, make_provider):
    fake_llm.queue_reply(text="too slow", delay=0.6)
    fake_llm.queue_reply(text="quick")

    assert make_provider("openai", timeout=0.2).complete(HI, []).content == "quick"
    assert len(fake_llm.requests) == 2


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@BOTH
def test_connection_refused(name):
    settings = ProviderSettings(
        name=name,
        base_url=f"http://127.0.0.1:{closed_port()}",
        api_key="sk-test-secret-key",
        max_retries=1,
        retry_backoff=0.01,
    )
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        create_provider(settings).complete(HI, [])

    assert caught.value.status is None
    assert "could not reach the provider" in str(caught.value)
    assert "gave up after 2 attempts" in str(caught.value)
    assert "sk-test-secret-key" not in str(caught.value)
    assert time.monotonic() - started < 2


def test_a_base_url_without_a_scheme_is_a_provider_error():
    provider = create_provider(ProviderSettings(name="openai", base_url="localhost:11434/v1", api_key="sk-x"))
    with pytest.raises(ProviderError, match="could not be sent"):
        provider.complete(HI, [])


@BOTH
def test_the_api_key_never_appears_in_errors(fake_llm, make_provider, name):
    # Some upstreams quote the rejected key back in their error message.
    key = "sk-test-secret-key"
    fake_llm.fail_next(401, body={"error": {"message": f"Incorrect API key provided: {key}."}})
    fake_llm.fail_next(500, n=3, body={"error": {"message": f"internal error for {key}"}})

    with pytest.raises(ProviderError) as unauthorised:
        make_provider(name).complete(HI, [])
    with pytest.raises(ProviderError) as exhausted:
        make_provider(name, max_retries=2).complete(HI, [])

    expected = f"{name}: upstream returned HTTP 401: Incorrect API key provided: [redacted]."
    assert str(unauthorised.value) == expected
    assert key not in str(exhausted.value)
    assert "internal error for [redacted]" in str(exhausted.value)


@BOTH
def test_stream_is_retried_before_any_body_arrives(fake_llm, make_provider, name):
    fake_llm.fail_next(502)
    fake_llm.queue_reply(text="streamed fine")

    items = list(make_provider(name).stream(HI, []))

    assert items[-1].content == "streamed fine"
    assert len(fake_llm.requests) == 2
    assert all(request.json["stream"] is True for request in fake_llm.requests)


def test_stream_is_not_retried_once_the_body_started(fake_llm, make_provider):
    first = sse({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]})
    fake_llm.queue_stream([first], complete=False)
    fake_llm.queue_reply(text="must not be fetched")
    stream = make_provider("openai").stream(HI, [])

    assert next(stream) == TextDelta("Hel")
    with pytest.raises(ProviderError, match="interrupted"):
        next(stream)
    assert len(fake_llm.requests) == 1


def test_stream_client_errors_are_not_retried(fake_llm, make_provider):
    fake_llm.fail_next(400, body={"error": {"message": "bad stream request"}})
    with pytest.raises(ProviderError, match="bad stream request"):
        list(make_provider("anthropic").stream(HI, []))
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize(
    "value, expected",
    [(None, None), ("2", 2.0), ("0.25", 0.25), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_retry_after_parsing(value, expected):
    assert http.retry_after_seconds(value) == expected


def test_retry_after_parsing_caps_large_values():
    assert http.retry_after_seconds("86400") == http.MAX_RETRY_AFTER


def test_backoff_grows_exponentially_with_bounded_jitter():
    client = http.HttpClient("test", ProviderSettings(retry_backoff=0.1))
    for attempt, base in enumerate([0.1, 0.2, 0.4, 0.8]):
        delay = client._backoff(attempt)
        assert base <= delay <= base + 0.1


def test_lines_are_reassembled_across_chunks():
    chunks = [b"data: he", b"llo\r", b"\n\ndata: w\xc3", b"\xa9\n", b"\n"]
    assert list(http.iter_lines(chunks)) == ["data: hello", "", "data: wé", ""]


def test_sse_parsing_handles_names_comments_and_multiline_data():
    lines = [": keep-alive", "event: message_start", "data: {\"a\":", "data: 1}", "", "data:[DONE]", ""]
    events = list(http.parse_sse(lines))
    assert events == [http.ServerSentEvent("message_start", '{"a":\n1}'), http.ServerSentEvent("", "[DONE]")]
