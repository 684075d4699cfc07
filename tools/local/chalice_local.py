"""``chalice local`` as the local stack runs it: ``python -m tools.local.chalice_local local ...``.

Two changes to its request handler:

* Nagle's algorithm off. Chalice writes a response's headers and its body in two
  writes. With Nagle's algorithm on, the body waits for the client to acknowledge the
  headers, and a client that delays its acknowledgement (as Linux does, up to 40 ms)
  stalls the response that long on a kept-alive connection: sequential requests on
  one connection took 52 ms at the median before, 7 ms after.
* A method it has no handler for (TRACE, FOO...) gets our 405 ``METHOD_NOT_ALLOWED``
  error body, as a known method on the wrong route does, instead of the stdlib
  server's 501 HTML page.
* Each response leaves in one write (headers and body buffered, flushed once per
  request) rather than two, and only answers of 400 and above print an access line:
  at a hundred requests a second both cost the API's process (and the client's)
  CPU that the Lambda path never spends.

And its full garbage collections are made rare (``processes.GC_THRESHOLDS``): each stalled
every request for ~100-200 ms.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def disable_nagle() -> None:
    from chalice.local import ChaliceRequestHandler

    # socketserver.StreamRequestHandler sets TCP_NODELAY on each connection when this is true.
    ChaliceRequestHandler.disable_nagle_algorithm = True


def one_write_per_response() -> None:
    from chalice.local import ChaliceRequestHandler

    # StreamRequestHandler: 0 is an unbuffered socket writer; -1 a buffered one, which
    # BaseHTTPRequestHandler flushes after every request (and at the connection's end).
    ChaliceRequestHandler.wbufsize = -1


def _log_request(handler: Any, code: Any = "-", size: Any = "-") -> None:
    if isinstance(code, int) and code < 400:
        return
    handler.log_message('"%s" %s %s', handler.requestline, str(code), str(size))


def access_lines_for_errors_only() -> None:
    from chalice.local import ChaliceRequestHandler

    ChaliceRequestHandler.log_request = _log_request


def _answer_not_allowed(handler: Any) -> None:
    from chalicelib.api_errors import error_response  # imported once the app is: it reads the stage's environment

    handler._parse_payload()  # read the body, so a kept-alive connection stays in step
    response = error_response(405, "METHOD_NOT_ALLOWED", f"Method {handler.command} is not allowed.")
    handler._send_http_response(405, dict(response.headers), json.dumps(response.body))


def _unknown_method(handler: Any, name: str) -> Callable[[], None]:
    # BaseHTTPRequestHandler looks up ``do_<METHOD>`` and answers 501 when it is missing.
    if name.startswith("do_"):
        return lambda: _answer_not_allowed(handler)
    raise AttributeError(name)


def answer_unknown_methods_with_405() -> None:
    from chalice.local import ChaliceRequestHandler

    ChaliceRequestHandler.__getattr__ = _unknown_method


def main() -> int:
    from chalice.cli import main as chalice_main

    from tools.local import lagging_index
    from tools.local.processes import rare_full_collections

    rare_full_collections()
    disable_nagle()
    one_write_per_response()
    access_lines_for_errors_only()
    answer_unknown_methods_with_405()
    lagging_index.install_from_env()  # only with LOCAL_INDEX_LAG_SECONDS set: GSIs lag as on AWS
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
