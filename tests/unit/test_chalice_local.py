"""chalice local as the stack runs it: no waiting on delayed acknowledgements, our 405 for unknown methods."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPConnection

import pytest
from chalice import Chalice
from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer

from tools.local import chalice_local


@contextmanager
def probe_server() -> Iterator[HTTPConnection]:
    """A one-route Chalice app behind chalice local's server on a free port: a connection to it."""
    app = Chalice("probe")
    app.route("/")(lambda: {"ok": True})
    server = LocalDevServer(app, Config(), "127.0.0.1", 0)
    threading.Thread(target=server.server.serve_forever, daemon=True).start()
    conn = HTTPConnection("127.0.0.1", server.server.server_address[1], timeout=5)
    try:
        yield conn
    finally:
        conn.close()
        server.server.shutdown()
        server.server.server_close()


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


def test_a_method_it_has_no_handler_for_gets_our_405_not_a_501_page() -> None:
    had_fallback = "__getattr__" in vars(ChaliceRequestHandler)
    chalice_local.answer_unknown_methods_with_405()  # without it: 501 and an HTML page
    try:
        with probe_server() as conn:
            for method, body in (("TRACE", None), ("FOO", b'{"x": 1}')):
                conn.request(method, "/", body=body)
                resp = conn.getresponse()
                assert resp.status == 405
                assert resp.getheader("Content-Type") == "application/json"
                assert json.loads(resp.read())["code"] == "METHOD_NOT_ALLOWED"
            conn.request("GET", "/")  # the same connection still serves
            resp = conn.getresponse()
            assert (resp.status, json.loads(resp.read())) == (200, {"ok": True})
    finally:
        if not had_fallback:
            del ChaliceRequestHandler.__getattr__


def test_each_response_leaves_in_one_write_and_only_errors_print_an_access_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ChaliceRequestHandler, "wbufsize", 0)
    monkeypatch.setattr(ChaliceRequestHandler, "log_request", ChaliceRequestHandler.log_request)
    chalice_local.one_write_per_response()
    chalice_local.access_lines_for_errors_only()
    lines: list[str] = []
    monkeypatch.setattr(ChaliceRequestHandler, "log_message", lambda self, fmt, *args: lines.append(fmt % args))
    with probe_server() as conn:
        for _ in range(2):  # the buffer is flushed after each request on a kept-alive connection
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == {"ok": True}
        conn.request("GET", "/missing")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 403
    assert len(lines) == 1 and "/missing" in lines[0] and "403" in lines[0]
