"""``chalice local`` as the local stack runs it: ``python -m tools.chalice_local local ...``.

Two changes to its request handler:

* Nagle's algorithm off. Chalice writes a response's headers and its body in two
  writes. With Nagle's algorithm on, the body waits for the client to acknowledge the
  headers, and a client that delays its acknowledgement (as Linux does, up to 40 ms)
  stalls the response that long on a kept-alive connection: sequential requests on
  one connection took 52 ms at the median before, 7 ms after.
* A method it has no handler for (TRACE, FOO...) gets our 405 ``METHOD_NOT_ALLOWED``
  error body, as a known method on the wrong route does, instead of the stdlib
  server's 501 HTML page.
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


def _answer_not_allowed(handler: Any) -> None:
    from chalicelib.http import error_response  # imported once the app is: it reads the stage's environment

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

    from tools import lagging_index

    disable_nagle()
    answer_unknown_methods_with_405()
    lagging_index.install_from_env()  # only with LOCAL_INDEX_LAG_SECONDS set: GSIs lag as on AWS
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
