"""A threaded websocket server on 127.0.0.1 for the fake gateways (``websockets``' sync server)."""

from __future__ import annotations

import json
import threading

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import serve


class FakeSocketServer:
    """Subclasses implement ``on_open(connection)`` and ``on_message(connection, message dict)``."""

    def __init__(self):
        self.ws_port = 0
        self._server = None
        self.lock = threading.RLock()
        self.connections: list = []  # open ones, newest last
        self.opened = 0

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def start_socket(self):
        self._server = serve(self._handle, "127.0.0.1", self.ws_port, compression=None, ping_interval=None)
        self.ws_port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop_socket(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
        with self.lock:
            connections, self.connections = list(self.connections), []
        for connection in connections:
            connection.close_socket()

    def _handle(self, connection) -> None:
        with self.lock:
            self.connections.append(connection)
            self.opened += 1
        try:
            self.on_open(connection)
            for raw in connection:
                self.on_message(connection, json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            with self.lock:
                if connection in self.connections:
                    self.connections.remove(connection)

    def send(self, connection, message: dict) -> None:
        try:
            connection.send(json.dumps(message))
        except ConnectionClosed:
            pass

    def current(self):
        with self.lock:
            return self.connections[-1] if self.connections else None

    def on_open(self, connection) -> None:
        raise NotImplementedError

    def on_message(self, connection, message: dict) -> None:
        raise NotImplementedError
