"""Talking to a served Lockgate over HTTP: fresh connections, the error envelope, a small API client."""

from __future__ import annotations

import requests

from tests.support.server import GunicornServer
from tests.support.sse import parse_sse


def fresh_get(url, **kwargs):
    """A request on a new connection, so gunicorn may hand it to either worker."""
    with requests.Session() as session:
        return session.get(url, timeout=10, **kwargs)


def assert_envelope(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


class Api:
    """Thin requests wrapper: base URL, token, and JSON bodies."""

    def __init__(self, server: GunicornServer, scope: str = "admin"):
        self.server = server
        self.headers = server.headers(scope)
        self.http = requests.Session()

    def close(self) -> None:
        # Open keep-alive connections would make the server's graceful stop wait for them.
        self.http.close()

    def url(self, path: str) -> str:
        return f"{self.server.url}/api/v1{path}"

    def get(self, path: str, **params) -> requests.Response:
        return self.http.get(self.url(path), params=params, headers=self.headers, timeout=30)

    def post(self, path: str, body: dict | None = None, headers: dict | None = None, **options):
        return self.http.post(self.url(path), json=body if body is not None else {},
                              headers={**self.headers, **(headers or {})}, timeout=30, **options)

    def delete(self, path: str) -> requests.Response:
        return self.http.delete(self.url(path), headers=self.headers, timeout=30)

    def patch(self, path: str, body: dict) -> requests.Response:
        return self.http.patch(self.url(path), json=body, headers=self.headers, timeout=30)

    def new_session(self, **body) -> dict:
        response = self.post("/sessions", body)
        assert response.status_code == 201, response.text
        return response.json()

    def send(self, session_id: str, content: str) -> requests.Response:
        # One connection per call, so concurrent senders do not share a socket.
        return requests.post(self.url(f"/sessions/{session_id}/messages"), json={"content": content},
                             headers=self.headers, timeout=60)

    def stream(self, session_id: str, content: str) -> list[tuple[str, dict]]:
        with requests.post(self.url(f"/sessions/{session_id}/messages"), json={"content": content},
                           headers={**self.headers, "Accept": "text/event-stream"}, stream=True,
                           timeout=60) as response:
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return parse_sse(response.iter_lines(decode_unicode=True))

    def session(self, session_id: str) -> dict:
        response = self.get(f"/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def transcript(self, session_id: str) -> list[dict]:
        response = self.get(f"/sessions/{session_id}/messages", limit=200)
        assert response.status_code == 200, response.text
        return response.json()["messages"]
