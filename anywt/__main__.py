"""The anywt command line: ``anywt COMMAND`` or ``python -m anywt COMMAND``.

``serve-echo``  an echo server; prints one JSON line (host, port, url, cert_sha256) first
``client URL``  sends a line on a stream and a datagram to an echo server, prints the echoes
``demo``        both in one process: a server, a client, every echo, a close; exit 0 if all worked
``selfcheck``   which core is live (compiled or pure) and how fast it decodes
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

__all__ = ["main"]

_LOOPS = ("asyncio", "uvloop", "trio")


def _run(func: Any, loop: str, *args: Any) -> Any:
    if loop == "uvloop":
        return anyio.run(func, *args, backend="asyncio", backend_options={"use_uvloop": True})
    return anyio.run(func, *args, backend=loop)


# ----------------------------------------------------------------------
# serve-echo


async def _serve_echo(args: argparse.Namespace) -> int:
    import anywt
    from anywt.echo import echo_handler, select_first_protocol

    options: dict[str, Any] = {"backend": args.backend}
    if args.certfile:
        options.update(certfile=args.certfile, keyfile=args.keyfile)
    server = anywt.Server(
        {args.path: echo_handler},
        select_protocol=select_first_protocol,
        host=args.host,
        port=args.port,
        **options,
    )
    async with server:
        info = {
            "host": server.host,
            "port": server.port,
            "url": server.url(args.path),
            "cert_sha256": server.certificate_sha256.hex(),
            "backend": args.backend,
        }
        if server.certificate is not None:
            info["spki_sha256_b64"] = server.certificate.spki_sha256_b64
        print(json.dumps(info), flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with anyio.create_task_group() as tasks:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        await server.aclose()
                        return

                tasks.start_soon(stop_on_signal)
                await server.serve_forever()
                tasks.cancel_scope.cancel()
    return 0


# ----------------------------------------------------------------------
# client


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"backend": args.backend, "connect_timeout": args.timeout}
    if args.cert_hash:
        options["server_certificate_hashes"] = tuple(args.cert_hash)
    elif args.insecure:
        options["verify"] = False
    if args.cafile:
        options["cafile"] = args.cafile
    return options


async def _exercise(session: Any, message: bytes, timeout: float) -> dict[str, Any]:
    """One round of every echo: bidi stream, uni stream, datagram."""
    results: dict[str, Any] = {}
    with anyio.fail_after(timeout):
        stream = await session.create_bidirectional_stream()
        await stream.write(message, end_stream=True)
        results["bidi_echo"] = (await stream.read_all()).decode("utf-8", "replace")

        uni = await session.create_unidirectional_stream()
        await uni.write(message, end_stream=True)
        reply = await session.accept_stream()
        results["uni_echo"] = (await reply.read_all()).decode("utf-8", "replace")

    datagram = b"datagram: " + message
    results["datagram_echo"] = None
    for _attempt in range(10):  # datagrams are unreliable: retry a few times
        session.send_datagram_nowait(datagram)
        with anyio.move_on_after(min(0.5, timeout)):
            results["datagram_echo"] = (await session.receive_datagram()).decode("utf-8", "replace")
            break
    return results


async def _client(args: argparse.Namespace) -> int:
    import anywt

    message = args.message.encode()
    async with anywt.connect(args.url, **_client_options(args)) as session:
        results = await _exercise(session, message, args.timeout)
        results["draft"] = session.connection.draft
        print(json.dumps(results))
        ok = (
            results["bidi_echo"] == args.message
            and results["uni_echo"] == args.message
            and results["datagram_echo"] == "datagram: " + args.message
        )
    return 0 if ok else 1


# ----------------------------------------------------------------------
# demo


async def _demo(args: argparse.Namespace) -> int:
    import anywt
    from anywt.echo import echo_handler

    started = time.perf_counter()
    async with anywt.Server(
        {"/echo": echo_handler}, host="127.0.0.1", port=0, backend=args.backend
    ) as server:
        url = server.url("/echo")
        digest = server.certificate_sha256.hex()
        print(f"echo server on {url} ({args.backend}, certificate sha-256 {digest})")
        async with anywt.connect(
            url, backend=args.backend, server_certificate_hashes=(server.certificate_sha256,)
        ) as session:
            print(f"session {session.session_id} open, {session.connection.draft}")
            results = await _exercise(session, b"hello from anywt", 10.0)
            for name, value in results.items():
                print(f"  {name:14} {value!r}")
            closer = await session.create_bidirectional_stream()
            await closer.write(b"close:4242:bye from the demo", end_stream=True)
            info = await session.wait_closed()
            print(f"  closed by the server: code {info.code}, reason {info.reason!r}")
        ok = (
            results["bidi_echo"] == "hello from anywt"
            and results["uni_echo"] == "hello from anywt"
            and results["datagram_echo"] == "datagram: hello from anywt"
            and info.code == 4242
        )
    elapsed = time.perf_counter() - started
    print(f"demo {'passed' if ok else 'FAILED'} in {elapsed:.2f} s")
    return 0 if ok else 1


# ----------------------------------------------------------------------
# selfcheck


def _selfcheck(args: argparse.Namespace) -> int:
    """Report which core is live and time it against the pure one."""
    import importlib

    from anywt import core

    report: dict[str, object] = {"compiled": core.COMPILED, "modules": core.twin_status()}
    sample = bytes.fromhex("25 7bbd 9d7f3e7d c2197c5eff14e88c") * 250
    timings: dict[str, float] = {}
    for kind in ("py", "c"):
        try:
            varint = importlib.import_module(f"anywt.core._varint_{kind}")
        except ImportError:
            continue
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            reader = varint.ByteReader(sample)
            while not reader.at_end():
                reader.pull_varint()
            best = min(best, time.perf_counter() - start)
        timings[kind] = best / 1000 * 1e9
    report["varint_decode_ns"] = {k: round(v, 1) for k, v in timings.items()}
    if "py" in timings and "c" in timings:
        report["compiled_speedup"] = round(timings["py"] / timings["c"], 1)
    print(json.dumps(report, indent=2 if args.pretty else None))
    return 0


# ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anywt", description="WebTransport for Python: tools")
    parser.add_argument("--version", action="store_true", help="print the version and core mode")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    sub = parser.add_subparsers(dest="command")

    def common(command: argparse.ArgumentParser) -> None:
        command.add_argument("--backend", default="aioquic", help="QUIC stack: aioquic or qh3")
        command.add_argument("--loop", default="asyncio", choices=_LOOPS, help="event loop")

    serve = sub.add_parser("serve-echo", help="run an echo server")
    common(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4433)
    serve.add_argument("--path", default="/echo")
    serve.add_argument(
        "--certfile", help="PEM certificate chain (default: a generated dev certificate)"
    )
    serve.add_argument("--keyfile", help="PEM private key")
    serve.set_defaults(func=_serve_echo, is_async=True)

    client = sub.add_parser("client", help="talk to an echo server")
    common(client)
    client.add_argument("url")
    client.add_argument(
        "--cert-hash", action="append", help="accept the certificate with this SHA-256 (hex)"
    )
    client.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    client.add_argument("--cafile", help="CA bundle to verify the server with")
    client.add_argument("--message", default="hello from anywt")
    client.add_argument("--timeout", type=float, default=10.0)
    client.set_defaults(func=_client, is_async=True)

    demo = sub.add_parser("demo", help="an echo server and a client in one process")
    common(demo)
    demo.set_defaults(func=_demo, is_async=True)

    check = sub.add_parser("selfcheck", help="which core is live and how fast it is")
    check.add_argument("--pretty", action="store_true")
    check.set_defaults(func=_selfcheck, is_async=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the command line."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.verbose:
        level = logging.DEBUG if args.verbose > 1 else logging.INFO
        logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.version:
        import anywt
        from anywt import core

        mode = "compiled" if core.COMPILED else "pure Python"
        print(f"anywt {anywt.__version__} ({mode} core)")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    if args.is_async:
        result: int = _run(args.func, args.loop, args)
    else:
        result = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
