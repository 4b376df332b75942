"""HTTP plumbing shared by the remote providers: JSON POSTs with retries, and
server-sent-event parsing for streamed replies.

Plain blocking `requests` calls are used on purpose: the service runs under
gevent monkey-patching, where they (and time.sleep) yield to other greenlets.
"""

import json
import logging
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests

from .base import ProviderError, ProviderSettings

log = logging.getLogger("agent::provider")

# Longest wait we accept from an upstream Retry-After header, in seconds, so a
# misbehaving server cannot park an agent turn for minutes.
MAX_RETRY_AFTER = 30.0
# Ceiling for one exponential backoff step, in seconds.
MAX_BACKOFF = 30.0
# Upstream error text is cut to this length before it reaches API clients.
ERROR_DETAIL_LIMIT = 300


@dataclass
class ServerSentEvent:
    event: str
    data: str


class HttpClient:
    """Sends requests for one provider, retrying transient failures."""

    def __init__(self, label: str, settings: ProviderSettings):
        self.label = label
        self.settings = settings
        self.session = requests.Session()

    def post_json(self, url: str, payload: dict, headers: dict) -> dict:
        response = self._post(url, payload, headers, stream=False)
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"{self.label}: response was not valid JSON") from None
        if not isinstance(body, dict):
            raise ProviderError(f"{self.label}: response was not a JSON object")
        return body

    def post_stream(self, url: str, payload: dict, headers: dict) -> Iterator[ServerSentEvent]:
        """POST and yield the server-sent events of the reply.

        Failures are retried only while opening the stream: once body bytes have
        been handed on, a retry could repeat text the caller has already seen.
        """
        response = self._post(url, payload, headers, stream=True)
        try:
            yield from parse_sse(iter_lines(response.iter_content(chunk_size=None)))
        except requests.RequestException:
            raise ProviderError(f"{self.label}: the reply stream was interrupted") from None
        finally:
            response.close()

    def decode_event_data(self, event: ServerSentEvent) -> dict:
        try:
            data = json.loads(event.data)
        except ValueError:
            raise ProviderError(f"{self.label}: malformed data in the reply stream") from None
        if not isinstance(data, dict):
            raise ProviderError(f"{self.label}: malformed data in the reply stream")
        return data

    def reported_error(self, detail: object) -> ProviderError:
        """An error the upstream reported inside a successful response, such as
        an error event part-way through a stream."""
        text = _tidy(str(detail)) if detail else "unknown error"
        return ProviderError(redact(f"{self.label}: upstream error: {text}", self.settings.api_key))

    def _post(self, url: str, payload: dict, headers: dict, stream: bool) -> requests.Response:
        attempts = max(self.settings.max_retries, 0) + 1
        for attempt in range(attempts):
            response, failure = self._attempt(url, payload, headers, stream)
            if response is not None:
                return response
            if attempt + 1 < attempts:
                log.info("%s; retrying (attempt %d of %d)", failure.error.message, attempt + 1, attempts)
                time.sleep(failure.wait if failure.wait is not None else self._backoff(attempt))
        message = f"{failure.error.message} (gave up after {attempts} attempts)"
        log.warning("%s", message)
        raise ProviderError(message, status=failure.error.status)

    def _attempt(self, url, payload, headers, stream):
        """One try. Returns (response, None) on success, or (None, failure) for a
        retryable failure; other failures raise ProviderError straight away."""
        try:
            # For streams the timeout bounds each wait for more data, not the
            # whole reply, so long answers are fine as long as they keep coming.
            response = self.session.post(
                url, json=payload, headers=headers, timeout=self.settings.timeout, stream=stream
            )
        except requests.Timeout:
            return None, _Failure(ProviderError(f"{self.label}: the request timed out"))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            return None, _Failure(ProviderError(f"{self.label}: could not reach the provider"))
        except requests.RequestException as exc:
            # Not retryable (bad URL, bad header, ...). The exception text is left
            # out because it can quote request headers, api key included.
            reason = type(exc).__name__
            raise ProviderError(f"{self.label}: the request could not be sent ({reason})") from None
        if response.status_code < 400:
            return response, None
        error = self._upstream_error(response)
        response.close()
        if not is_retryable_status(response.status_code):
            log.warning("%s", error.message)
            raise error
        return None, _Failure(error, retry_after_seconds(response.headers.get("Retry-After")))

    def _backoff(self, attempt: int) -> float:
        base = self.settings.retry_backoff
        # Jitter spreads out clients that failed together, so they do not all
        # come back at the same instant.
        return min(base * 2**attempt, MAX_BACKOFF) + random.uniform(0, base)

    def _upstream_error(self, response: requests.Response) -> ProviderError:
        message = f"{self.label}: upstream returned HTTP {response.status_code}"
        detail = upstream_error_detail(response)
        if detail:
            message = f"{message}: {detail}"
        return ProviderError(redact(message, self.settings.api_key), status=response.status_code)


@dataclass
class _Failure:
    error: ProviderError
    wait: float | None = None  # what the server asked for, if anything


def is_retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, capped; None when absent or
    not a number (the HTTP-date form is rare enough to fall back to backoff)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def upstream_error_detail(response: requests.Response) -> str:
    """The error message from a JSON error body, or "" if there is none.

    Handles the OpenAI/Anthropic shape {"error": {"message": ...}} as well as
    the {"error": "..."} shape some OpenAI-compatible servers use.
    """
    try:
        body = response.json()
    except (ValueError, requests.RequestException):
        # Not JSON, or the body could not be read: the status alone will do.
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        detail = error.get("message")
    elif isinstance(error, str):
        detail = error
    else:
        detail = body.get("message")
    if not isinstance(detail, str):
        return ""
    return _tidy(detail)


def _tidy(text: str) -> str:
    # One line, bounded: upstream text ends up in API responses and logs.
    return " ".join(text.split())[:ERROR_DETAIL_LIMIT]


def redact(text: str, secret: str) -> str:
    # Upstreams sometimes quote the key they rejected; never pass it on.
    return text.replace(secret, "[redacted]") if secret else text


def iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Split a byte stream into text lines, however the chunks fall.

    Splitting on b"\\n" before decoding is safe because that byte never occurs
    inside a multi-byte UTF-8 character. A trailing "\\r" is dropped so CRLF
    streams work too.
    """
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", errors="replace")


def parse_sse(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Group lines into server-sent events (a blank line ends an event)."""
    event_name, data_lines = "", []
    for line in lines:
        if not line:
            if data_lines:
                yield ServerSentEvent(event_name, "\n".join(data_lines))
            event_name, data_lines = "", []
            continue
        if line.startswith(":"):  # comment / keep-alive
            continue
        field_name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field_name == "event":
            event_name = value
        elif field_name == "data":
            data_lines.append(value)
    if data_lines:
        yield ServerSentEvent(event_name, "\n".join(data_lines))
