"""A WebTransport peer in its own process, for the fault tests (killed with SIGKILL mid-transfer).

::

    python rel_peer.py server PORT BACKEND CERTFILE KEYFILE   # prints "READY <port>"
    python rel_peer.py upload URL SHA256HEX BACKEND           # prints "CONNECTED", "SENT <n>"...

``server`` serves ``/sink`` (every stream read to its end and answered with
its SHA-256, every datagram echoed) and ``/echo`` (anywt's echo service)
until killed.  ``upload`` opens a session and writes a bidirectional stream
without end, printing its progress, until killed.
"""

from __future__ import annotations

import hashlib
import sys

import anyio

import anywt
from anywt.echo import echo_handler


async def sink(session: anywt.Session) -> None:
    async def drain(stream: anywt.BidirectionalStream) -> None:
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in stream:
                digest.update(chunk)
                size += len(chunk)
            await stream.write(digest.digest() + size.to_bytes(8, "big"), end_stream=True)
        except (anywt.WebTransportError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return

    async def datagrams() -> None:
        async for datagram in session.datagrams:
            try:
                session.send_datagram_nowait(datagram)
            except anywt.WebTransportError:
                return

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(datagrams)
        async for stream in session.incoming_streams():
            if isinstance(stream, anywt.BidirectionalStream):
                tasks.start_soon(drain, stream)
        tasks.cancel_scope.cancel()


async def serve(port: int, backend: str, certfile: str, keyfile: str) -> None:
    async with anywt.Server(
        {"/sink": sink, "/echo": echo_handler},
        host="127.0.0.1",
        port=port,
        backend=backend,
        certfile=certfile,
        keyfile=keyfile,
        idle_timeout=5.0,
    ) as server:
        print(f"READY {server.port}", flush=True)
        await server.serve_forever()


async def upload(url: str, digest: str, backend: str) -> None:
    async with anywt.connect(
        url, backend=backend, server_certificate_hashes=(bytes.fromhex(digest),), idle_timeout=5.0
    ) as session:
        print("CONNECTED", flush=True)
        stream = await session.create_bidirectional_stream()
        chunk = b"u" * 65536
        sent = 0
        while True:
            await stream.write(chunk)
            sent += len(chunk)
            if sent % (1 << 20) == 0:
                print(f"SENT {sent}", flush=True)


def main() -> None:
    mode = sys.argv[1]
    if mode == "server":
        port, backend, certfile, keyfile = sys.argv[2:6]
        anyio.run(serve, int(port), backend, certfile, keyfile)
    elif mode == "upload":
        url, digest, backend = sys.argv[2:5]
        anyio.run(upload, url, digest, backend)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
