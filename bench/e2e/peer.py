"""One end of an end-to-end bench: ``peer.py STACK server|client [options]``.

Stacks (each imports only its own library, so the 3.12-only ones stay there):

* ``anywt`` (``--backend``, ``--loop``): anywt's Server and connect();
* ``raw-aioquic``, ``raw-qh3``, ``raw-aiopquic``: plain QUIC streams and
  datagrams through the library's own asyncio API;
* ``aioquic-h3wt``: aioquic's own HTTP/3 WebTransport (``H3Connection``);
* ``pywebtransport``: pywebtransport 0.21's server and client.

``bench/run.py`` starts these; run one by hand to debug a stack::

    python bench/e2e/peer.py raw-qh3 server --certfile c.pem --keyfile k.pem
    python bench/e2e/peer.py raw-qh3 client --port PORT --workload bulk --size 5000000
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from driver import add_client_arguments, run_client, run_on

STACKS = {
    "anywt": "stack_anywt",
    "raw-aioquic": "stack_quic",
    "raw-qh3": "stack_quic",
    "raw-aiopquic": "stack_aiopquic",
    "aioquic-h3wt": "stack_h3wt",
    "pywebtransport": "stack_pywebtransport",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", choices=sorted(STACKS))
    parser.add_argument("--backend", default="aioquic", help="anywt's QUIC stack")
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    server.add_argument("--certfile", required=True)
    server.add_argument("--keyfile", required=True)
    server.add_argument("--max-sessions", type=int, default=1100)
    client = sub.add_parser("client")
    add_client_arguments(client)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    module: Any = importlib.import_module(STACKS[args.stack])
    if args.stack.startswith("raw-"):
        args.lib = args.stack[4:]
    loop = args.loop if args.stack == "anywt" else "asyncio"
    if args.role == "server":
        run_on(loop, lambda: module.serve(args))
        return 0
    return run_client(lambda: module.Client(args), args, loop)


if __name__ == "__main__":
    sys.exit(main())
