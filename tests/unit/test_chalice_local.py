"""The local API answers without waiting on delayed acknowledgements."""

from __future__ import annotations

import socket
import threading
from http.client import HTTPConnection

import pytest
from chalice.local import ChaliceRequestHandler

from tools import chalice_local


def test_connections_are_served_with_nagle_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ChaliceRequestHandler, "disable_nagle_algorithm", False)
    chalice_local.disable_nagle()  # without it, TCP_NODELAY stays 0
    seen: list[int] = []

    class Probe(ChaliceRequestHandler):
        def __init__(self, request, client_address, server) -> None:
            self.server = server
            self.request, self.client_address = request, client_address
            self.setup()  # what socketserver does first with each connection
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            self.finish()

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, addr = listener.accept()
        Probe(conn, addr, None)
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    HTTPConnection("127.0.0.1", port, timeout=5).connect()
    thread.join(5)
    listener.close()
    assert seen and seen[0] != 0
