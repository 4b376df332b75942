"""Checks bench/nginx/lockgate.conf (the config in docs/operations.md) with a real nginx in front of gunicorn.

    .venv/bin/python bench/check_nginx.py [--quick]

Needs nginx (``apt-get install -y nginx``); the system's nginx config is not
touched: nginx runs from a temp prefix (``nginx -p PREFIX -c PREFIX/conf/nginx.conf``)
on a free loopback port, and gunicorn is started as the e2e tests start it
(temp TOML config via LOCKGATE_CONFIG, temp LOCKGATE_DATA_DIR) with
``[gateway] trusted_proxies = ["127.0.0.1"]``. The only edits to the tested
file are the upstream port and the listen address.

Checks, each printed with its evidence:

1. health through nginx: 200 JSON, X-Request-ID from nginx's $request_id;
2. X-Forwarded-For: clients on distinct loopback source addresses
   (127.0.0.5, 127.0.0.6) get distinct per-address rate-limit counters
   through nginx (XFF believed from 127.0.0.1), a client-supplied XFF cannot
   move a client onto another counter, and direct requests from an untrusted
   address have their XFF ignored;
3. SSE through nginx: the stream's headers, the delay from a log record's
   insert to its event at the client, a heartbeat comment after 15 s of
   silence (skipped with --quick), and a clean end of the stream when
   gunicorn stops gracefully;
4. bodies: 1.5 MiB (above [gateway] max_body_bytes, below
   client_max_body_size) gets Lockgate's JSON 413, sent with a Content-Length or
   chunked; 3 MiB gets nginx's JSON 413;
5. request lines and headers: nginx refuses one too long (414), a header line too
   large (431) and a malformed request (400) in the same envelope, and a request
   line just under nginx's limit passes to gunicorn (its own limit is above);
6. gunicorn down: nginx answers 503 in Lockgate's error envelope.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import deployment, discard  # noqa: E402
from tests.support.server import free_port, insert_log  # noqa: E402
from tests.support.sse import SseStream  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

SITE = ROOT / "bench" / "nginx" / "lockgate.conf"
MAIN_CONF = """\
worker_processes 1;
error_log {prefix}/logs/error.log info;
pid {prefix}/logs/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    include {prefix}/conf/lockgate.conf;
}}
"""

failures: list[str] = []


def check(ok: bool, what: str, evidence: str = "") -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}" + (f"  ({evidence})" if evidence else ""), flush=True)
    if not ok:
        failures.append(what)


def request(port: int, method: str, path: str, headers=None, body: bytes | None = None, source: str | None = None,
            send_body: bool = True):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body is not None and send_body:
            try:
                conn.send(body)
            except OSError:
                pass  # nginx may answer and close before the whole body is sent
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def seconds_until(stream: SseStream, condition, timeout: float) -> float | None:
    """Seconds until ``condition()`` holds on the stream; None if the stream ended or the time ran out first."""
    started = time.monotonic()
    try:
        return time.monotonic() - started if stream.receive_until(condition, timeout) else None
    except TimeoutError:
        return None


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the 15 s heartbeat wait")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (nginx and gunicorn logs)")
    args = parser.parse_args()
    if shutil.which("nginx") is None:
        print("nginx is not installed: apt-get install -y nginx", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="lockgate-nginx-check-"))
    os.chmod(work, 0o755)
    server = deployment(work / "lockgate", {
        "gateway": {"trusted_proxies": ["127.0.0.1"]},
        "rate_limits": {"probes": "100000/h"},
    })
    prefix = work / "nginx"
    nginx = None
    try:
        server.start(settle=1.0)
        read_token = server.cli_token("read", name="nginx-check")
        admin_token = server.cli_token("admin", name="nginx-check-admin")
        nginx_port = free_port()
        for sub in ("conf", "logs", "temp/body", "temp/proxy", "temp/fastcgi", "temp/uwsgi", "temp/scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
            os.chmod(prefix / sub, 0o777)  # nginx workers run as an unprivileged user
        os.chmod(prefix, 0o755)
        os.chmod(prefix / "temp", 0o755)
        site = SITE.read_text()
        site = site.replace("server 127.0.0.1:3120;", f"server 127.0.0.1:{server.port};", 1)
        site = site.replace("listen 80;", f"listen 127.0.0.1:{nginx_port};", 1)
        (prefix / "conf" / "lockgate.conf").write_text(site)
        (prefix / "conf" / "nginx.conf").write_text(MAIN_CONF.format(prefix=prefix))
        conf = str(prefix / "conf" / "nginx.conf")
        test = subprocess.run(["nginx", "-t", "-p", str(prefix), "-c", conf], capture_output=True, text=True)
        print(f"nginx -t: {test.stderr.strip().splitlines()[-1]}")
        if test.returncode != 0:
            print(test.stderr)
            return 1
        nginx = subprocess.Popen(["nginx", "-p", str(prefix), "-c", conf, "-g", "daemon off;"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: accepts(nginx_port), timeout=5, interval=0.1, message=f"nginx listening on {nginx_port}")
        print(f"gunicorn on 127.0.0.1:{server.port} (trusted_proxies = [\"127.0.0.1\"]), "
              f"nginx {nginx_version()} on 127.0.0.1:{nginx_port} with {SITE.relative_to(ROOT)}")

        print("\n1. health through nginx")
        status, headers, body = request(nginx_port, "GET", "/api/v1/status/health")
        check(status == 200 and json.loads(body) == {"healthy": True}, "GET /api/v1/status/health -> 200",
              body.decode().strip())
        rid = headers.get("x-request-id", "")
        check(bool(re.fullmatch(r"[0-9a-f]{32}", rid)), "X-Request-ID is nginx's $request_id", rid)

        print("\n2. X-Forwarded-For and [gateway] trusted_proxies (per-address counters of the probes limit)")

        def remaining(port, source, xff=None):
            extra = {"X-Forwarded-For": xff} if xff else {}
            _s, h, _b = request(port, "GET", "/api/v1/status/health", headers=extra, source=source)
            return int(h["x-ratelimit-remaining"])

        a1, a2, a3 = (remaining(nginx_port, "127.0.0.5") for _ in range(3))
        b1 = remaining(nginx_port, "127.0.0.6")
        a4 = remaining(nginx_port, "127.0.0.5", xff="198.51.100.7")
        check(a2 == a1 - 1 and a3 == a1 - 2, "127.0.0.5 via nginx: one counter", f"remaining {a1}, {a2}, {a3}")
        check(b1 == a1, "127.0.0.6 via nginx: its own counter, so nginx's X-Forwarded-For was believed",
              f"remaining {b1}")
        check(a4 == a3 - 1, "127.0.0.5 sending X-Forwarded-For: 198.51.100.7 via nginx stays on its counter",
              f"remaining {a4}")
        d1 = remaining(server.port, "127.0.0.7", xff="198.51.100.8")
        d2 = remaining(server.port, "127.0.0.7", xff="198.51.100.9")
        check(d2 == d1 - 1, "direct from untrusted 127.0.0.7: its X-Forwarded-For is ignored",
              f"remaining {d1}, {d2} with two different forged addresses")

        print("\n3. Server-Sent Events through nginx")
        stream = SseStream(f"http://127.0.0.1:{nginx_port}", "/api/v1/logs/stream",
                           {"Host": "lockgate.example.com", "Authorization": f"Bearer {read_token}"},
                           {"module": "nginxcheck"}, timeout=10)
        check(stream.status == 200, "GET /api/v1/logs/stream -> 200", f"status {stream.status}")
        check(stream.headers.get("content-type", "").startswith("text/event-stream"), "Content-Type: text/event-stream",
              stream.headers.get("content-type", ""))
        check(stream.headers.get("cache-control") == "no-cache", "Cache-Control: no-cache passed on",
              stream.headers.get("cache-control", ""))
        forwarded = "passed on" if "x-accel-buffering" in stream.headers else "not passed on"
        print(f"  (X-Accel-Buffering from Lockgate: {forwarded} to the client by nginx)")
        took = seconds_until(stream, lambda: stream.retry is not None, 5)
        check(took is not None, "first bytes (retry:) arrive at once", f"{(took or 0) * 1000:.0f} ms")
        time.sleep(0.5)
        record_id = insert_log(server.database_url, "nginx check record", module="nginxcheck")
        inserted = time.monotonic()
        try:
            record = stream.events_until(lambda event: event.id == str(record_id))[-1:]
        except TimeoutError:
            record = []
        arrived = time.monotonic()
        check(bool(record) and record[0].id == str(record_id), "a log record reaches the client through nginx",
              f"{(arrived - inserted) * 1000:.0f} ms from insert to arrival")
        if record:
            data = record[0].json()
            check(record[0].event == "log" and data.get("message") == "nginx check record"
                  and data.get("id") == record_id,
                  "event carries id, event: log and the entry as JSON", json.dumps(data)[:120])
        if not args.quick:
            took = seconds_until(stream, lambda: "heartbeat" in stream.comments, 25)
            check(took is not None, "heartbeat comment after 15 s idle, stream still open through nginx",
                  f"after {took or 0:.1f} s")
        else:
            print("  (heartbeat wait skipped: --quick)")

        print("\n4. request bodies")
        auth = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
        big = b'{"logs.level": "' + b"x" * (1536 * 1024) + b'"}'
        status, headers, body = request(nginx_port, "PATCH", "/api/v1/config", headers=auth, body=big)
        envelope = _json(body)
        check(status == 413 and envelope.get("error", {}).get("code") == "payload_too_large"
              and "x-request-id" in headers,
              "1.5 MiB body: Lockgate's own JSON 413 ([gateway] max_body_bytes)", f"{status} {body[:90]!r}")
        huge = b"x" * (3 * 1024 * 1024)
        status, headers, body = request(nginx_port, "PATCH", "/api/v1/config", headers=auth, body=huge, send_body=False)
        envelope = _json(body)
        check(status == 413 and envelope.get("error", {}).get("code") == "payload_too_large",
              "3 MiB body: nginx's 413 (client_max_body_size) in the same envelope", f"{status} {body[:90]!r}")

        status, headers, body = raw(nginx_port, b"PATCH /api/v1/config HTTP/1.1\r\nHost: lockgate.example.com\r\n"
                                    + "".join(f"{k}: {v}\r\n" for k, v in auth.items()).encode()
                                    + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(big))
        check(status == 413 and _json(body).get("error", {}).get("code") == "payload_too_large",
              "1.5 MiB chunked body: Lockgate's JSON 413 as well", f"{status} {body[:90]!r}")

        print("\n5. request lines and headers")
        read = {"Authorization": f"Bearer {read_token}"}
        status, _h, body = request(nginx_port, "GET", "/api/v1/status?pad=" + "a" * 7900, headers=read)
        check(status == 200, "a 7.9 kB request line passes nginx and gunicorn", f"{status} {body[:60]!r}")
        status, _h, body = request(nginx_port, "GET", "/api/v1/status?pad=" + "a" * 9000, headers=read)
        check(status == 414 and _json(body).get("error", {}).get("code") == "uri_too_long",
              "a 9 kB request line: nginx's 414 in the envelope", f"{status} {body[:90]!r}")
        status, _h, body = request(nginx_port, "GET", "/api/v1/status", headers={**read, "X-Pad": "a" * 9000})
        check(status == 431 and _json(body).get("error", {}).get("code") == "headers_too_large",
              "a 9 kB header line: 431 in the envelope", f"{status} {body[:90]!r}")
        status, _h, body = raw(nginx_port, b"GET /api/v1/status/health HTTP/1.1\r\n\r\n")
        check(status == 400 and _json(body).get("error", {}).get("code") == "bad_request",
              "an HTTP/1.1 request without Host: 400 in the envelope", f"{status} {body[:90]!r}")

        print("\n6. graceful stop of gunicorn with the stream open, then gunicorn down")
        stopped = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        took = seconds_until(stream, lambda: stream.ended, 30)
        check(took is not None and stream.ended, "the stream through nginx ends with the terminating chunk",
              f"after {took if took is not None else float('nan'):.1f} s")
        server.process.wait(30)
        print(f"  gunicorn exited {time.monotonic() - stopped:.1f} s after SIGTERM")
        status, headers, body = request(nginx_port, "GET", "/api/v1/status")
        check(status == 503 and _json(body).get("error", {}).get("code") == "service_unavailable"
              and headers.get("retry-after") == "5",
              "upstream down: nginx answers 503 in the envelope", f"{status} {body[:90]!r}")
    finally:
        if nginx is not None and nginx.poll() is None:
            nginx.send_signal(signal.SIGQUIT)
            try:
                nginx.wait(10)
            except subprocess.TimeoutExpired:
                nginx.kill()
        server.stop()
        discard(work, args.keep)
    print(f"\n{'all checks passed' if not failures else f'{len(failures)} check(s) failed: ' + '; '.join(failures)}")
    return 1 if failures else 0


def chunked(body: bytes, size: int = 65536) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def raw(port: int, data: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are (what http.client would not send) and read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()


def _json(body: bytes) -> dict:
    try:
        return json.loads(body)
    except ValueError:
        return {}


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    return out.stderr.strip().split("/")[-1]


if __name__ == "__main__":
    sys.exit(main())
