import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.hooks import targets
from tests.hooks.receiver import Receiver


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "non-public"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1%eth0", "link-local"),
    ("fc00::1", "private"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a00:1", "private"),
    ("2002:7f00:1::", "loopback"),
])
def test_non_public_addresses_are_blocked(address, reason):
    assert targets.blocked_reason(address) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address):
    assert targets.blocked_reason(address) is None


def test_urls_parse_into_host_port_and_path():
    assert targets.parse("https://Example.COM/hook?a=1") == targets.Target("https", "example.com", 443, "/hook?a=1")
    assert targets.parse("http://example.com") == targets.Target("http", "example.com", 80, "/")
    assert targets.parse("http://[2606:4700::1]:8080/x") == targets.Target("http", "2606:4700::1", 8080, "/x")


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.com/", "http:// or https://"),
    ("example.com/hook", "http:// or https://"),
    ("https:///hook", "must name a host"),
    ("https://user:pass@example.com/", "credentials"),
    ("https://example.com:99999/", "invalid port"),
    ("http://[::1/", "not well formed"),
    ("https://example.com/a b", "spaces"),
    ("https://example.com/\r\nX-Injected: 1", "spaces or control"),
    ("https://example.com/" + "a" * 2100, "2048"),
])
def test_unusable_urls_are_rejected(url, reason):
    with pytest.raises(ValueError, match=reason):
        targets.parse(url)


def test_a_host_with_any_private_address_is_refused(fake_dns):
    fake_dns({"mixed.example.test": ["93.184.215.14", "10.0.0.7"]})
    target = targets.parse("https://mixed.example.test/")
    with pytest.raises(targets.TargetRefused, match=r"private address \(10\.0\.0\.7\)"):
        targets.allowed_addresses(target, allow_private=False)
    assert targets.allowed_addresses(target, allow_private=True) == ["93.184.215.14", "10.0.0.7"]


def test_unresolvable_hosts_are_transport_errors():
    with pytest.raises(targets.TransportError, match="cannot resolve"):
        targets.allowed_addresses(targets.parse("http://no-such-host.invalid/"), allow_private=True)


def test_the_request_goes_to_the_checked_address_with_the_original_host(fake_dns):
    fake_dns({"hooks.example.test": ["127.0.0.1"]})
    with Receiver() as receiver:
        target = targets.parse(f"http://hooks.example.test:{receiver.port}/in?x=1")
        addresses = targets.allowed_addresses(target, allow_private=True)
        response = targets.post(target, addresses, {"Content-Type": "application/json"}, b"{}", 2.0)
        (request,) = receiver.received()
    assert response.status == 200
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert request.path == "/in?x=1"


def test_unreachable_address_falls_through_to_the_next():
    with Receiver() as receiver:
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        target = targets.parse(f"http://localhost:{receiver.port}/")
        with pytest.raises(targets.TransportError, match="connection refused"):
            targets.post(targets.parse(f"http://localhost:{closed_port}/"), ["127.0.0.1"], {}, b"{}", 2.0)
        # ::1 is not listening (the receiver binds IPv4 only), 127.0.0.1 is.
        assert targets.post(target, ["::1", "127.0.0.1"], {}, b"{}", 2.0).status == 200


class _TrickleHandler(BaseHTTPRequestHandler):
    """Sends its status line one byte at a time, forever: only a total deadline ends it."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            for byte in b"HTTP/1.1 200 OK\r\n" * 1000:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    def log_message(self, *args):
        pass


def test_a_trickling_receiver_is_cut_off_at_the_deadline():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TrickleHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = targets.parse(f"http://127.0.0.1:{server.server_address[1]}/")
        started = time.monotonic()
        with pytest.raises(targets.TransportError, match="timed out"):
            targets.post(target, ["127.0.0.1"], {}, b"{}", 0.5)
        assert time.monotonic() - started < 1.5
    finally:
        server.shutdown()
        server.server_close()


def test_retry_after_is_read_in_seconds_or_as_a_date():
    class Answer:
        def __init__(self, value):
            self.value = value

        def getheader(self, name):
            return self.value

    assert targets._retry_after(Answer("7")) == 7.0
    assert targets._retry_after(Answer(None)) is None
    assert targets._retry_after(Answer("soon")) is None
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= targets._retry_after(Answer(later)) <= 61


# ---- TLS: SNI and certificate checks use the URL's host, not the address -------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.example.test",
         "-addext", "subjectAltName=DNS:hooks.example.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_receiver(certificate):
    cert, key = certificate
    seen_names = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen_names.append(name)
    receiver = Receiver()
    receiver._server.socket = context.wrap_socket(receiver._server.socket, server_side=True)
    with receiver:
        yield receiver, seen_names


def test_https_sends_sni_and_checks_the_certificate_for_the_url_host(monkeypatch, fake_dns, certificate,
                                                                    tls_receiver):
    receiver, seen_names = tls_receiver
    monkeypatch.setattr(targets, "_tls_context", ssl.create_default_context(cafile=str(certificate[0])))
    fake_dns({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})

    good = targets.parse(f"https://hooks.example.test:{receiver.port}/secure")
    assert targets.post(good, ["127.0.0.1"], {}, b"{}", 3.0).status == 200
    assert seen_names == ["hooks.example.test"]
    assert receiver.received()[0].headers["host"] == f"hooks.example.test:{receiver.port}"

    # The same address under a name the certificate does not cover is refused.
    wrong = targets.parse(f"https://other.example.test:{receiver.port}/secure")
    with pytest.raises(targets.TransportError, match="certificate"):
        targets.post(wrong, ["127.0.0.1"], {}, b"{}", 3.0)
