"""The interop matrix: what the interop tests cover, declared once.

:data:`ROWS` is the single source of truth.  The tests parametrize over it
(each test takes the rows naming it) and run one check per feature of the
row through a :class:`Checklist`; a feature a row claims but the test cannot
check fails the test.  README.md's interop section is rendered from the same
list, so the table cannot claim what is not tested::

    python tests/interop/matrix.py --write   # update README.md between the markers
    python tests/interop/matrix.py --check   # exit 1 if README.md is stale

``tests/interop/test_matrix.py`` runs ``--check`` and verifies that every row
names an existing test.  Standard library only.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FEATURES",
    "MIN_PYTHON",
    "PEERS",
    "ROWS",
    "Checklist",
    "Row",
    "render",
    "rows_for",
    "runs_here",
]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
START = "<!-- interop-matrix:start -->"
END = "<!-- interop-matrix:end -->"

#: Peer key -> (name in the table, what it is).
PEERS = {
    "chromium": (
        "Chromium 156",
        "Debian's `chromium`, headless, driving the W3C WebTransport API from a page "
        "(`tests/interop/browser/`), certificate pinned with `serverCertificateHashes`",
    ),
    "aioquic": (
        "aioquic 1.7.2",
        "aioquic's own HTTP/3 WebTransport (`H3Connection(enable_webtransport=True)`) "
        "as client and server (`tests/peers/aioquic_wt.py`)",
    ),
    "pywebtransport": (
        "pywebtransport 0.21.1",
        "pywebtransport's public API (draft-15, session flow control on) in its own "
        "CPython 3.12 venv (`tests/peers/pywebtransport_peer.py`)",
    ),
    "anywt": (
        "anywt",
        "anywt itself on another QUIC backend: a QUIC interop test between aioquic, qh3 "
        "and picoquic (aiopquic), which share anywt's protocol core and nothing below it",
    ),
}

#: Feature key -> (column header, what the test checks), in column order.
FEATURES: dict[str, tuple[str, str]] = {
    "version": (
        "version",
        "the draft anywt negotiated is the row's; for Chromium also the version in its net-log",
    ),
    "bidi": ("bidi", "a bidirectional stream is echoed, then FIN"),
    "uni": ("uni", "a client uni stream is answered by a server uni stream"),
    "server-bidi": (
        "server bidi",
        "a server-opened bidi stream is read by the client, which writes back on it",
    ),
    "datagrams": ("datagram", "datagram echo (resent until one comes back)"),
    "reset-code": (
        "RESET_STREAM 7",
        "a stream the sender aborts with application code 7 (RESET_STREAM) reaches "
        "the receiver's application with code 7, and the session lives on",
    ),
    "stop-code": (
        "STOP_SENDING 7",
        "a stream the receiver cancels with code 7 (STOP_SENDING) reaches the "
        "sender's application with code 7",
    ),
    "client-close": (
        "client close",
        "the client closes with (code, reason); the server sees exactly those",
    ),
    "server-close": (
        "server close",
        "the server closes with (code, reason); the client sees exactly those",
    ),
    "subprotocol": ("subprotocol", "WT-Available-Protocols answered by WT-Protocol"),
    "reject": ("404", "a session to a path the server does not serve is rejected with 404"),
    "data-credit": (
        "WT_MAX_DATA",
        "a transfer larger than the initial WT_MAX_DATA both ways: credit flows, "
        "seen in anywt's diagnostics and the peer's",
    ),
    "stream-credit": (
        "WT_MAX_STREAMS",
        "more streams each way than the initial WT_MAX_STREAMS_BIDI/UNI",
    ),
    "multi-session": ("sessions/conn", "several sessions on one QUIC connection"),
    "sessions-in-a-row": ("20 in a row", "20 sessions one after the other"),
}


@dataclass(frozen=True)
class Row:
    """One line of the matrix: a peer in a role, against anywt on a backend."""

    peer: str
    #: The foreign peer's role: "client" (it connects to anywt's server) or "server".
    peer_role: str
    #: anywt's QUIC backend in this row.
    anywt_backend: str
    #: The draft anywt must negotiate (``Connection.draft``).
    dialect: str
    features: tuple[str, ...]
    #: ``file.py::function`` of the test that runs this row.
    test: str
    #: For anywt against anywt: the other side's backend.
    peer_backend: str | None = None

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or self.peer not in PEERS or self.peer_role not in ("client", "server"):
            raise ValueError(f"bad matrix row {self}: unknown {unknown or self.peer}")

    @property
    def id(self) -> str:
        """A pytest id: ``aioquic-client-qh3-draft-02``."""
        parts = [self.peer, self.peer_role, self.anywt_backend]
        if self.peer_backend:
            parts.append(self.peer_backend)
        return "-".join([*parts, self.dialect])

    @property
    def backends(self) -> tuple[str, ...]:
        """anywt's backends in this row (two for anywt against anywt)."""
        if self.peer_backend is None:
            return (self.anywt_backend,)
        return (self.anywt_backend, self.peer_backend)

    @property
    def direction(self) -> str:
        if self.peer_role == "client":
            return "peer client → anywt server"
        return "anywt client → peer server"

    @property
    def backend_text(self) -> str:
        if self.peer_backend is None:
            return self.anywt_backend
        return f"{self.anywt_backend} client, {self.peer_backend} server"


_BROWSER = (
    "version",
    "bidi",
    "uni",
    "server-bidi",
    "datagrams",
    "reset-code",
    "stop-code",
    "client-close",
    "server-close",
    "subprotocol",
    "sessions-in-a-row",
)
_AIOQUIC = (
    "version",
    "bidi",
    "uni",
    "server-bidi",
    "datagrams",
    "reset-code",
    "stop-code",
    "client-close",
    "server-close",
    "subprotocol",
    "reject",
)
_PYWT_CLIENT = (
    "version",
    "bidi",
    "uni",
    "datagrams",
    "reset-code",
    "stop-code",
    "client-close",
    "server-close",
    "subprotocol",
    "data-credit",
    "stream-credit",
    "multi-session",
)
_PYWT_SERVER = (
    "version",
    "bidi",
    "uni",
    "datagrams",
    "reset-code",
    "client-close",
    "server-close",
    "subprotocol",
    "reject",
    "data-credit",
    "stream-credit",
)
_ANYWT = (
    "version",
    "bidi",
    "uni",
    "server-bidi",
    "datagrams",
    "reset-code",
    "stop-code",
    "client-close",
    "server-close",
    "subprotocol",
    "reject",
    "data-credit",
    "stream-credit",
)
_BACKENDS = ("aioquic", "qh3", "aiopquic")
#: Backends that exist on some interpreters only: aiopquic's wheels need
#: CPython >= 3.12.  Their rows stay in the table (README is the same on every
#: interpreter) but are not collected on an older one; CI runs them in its
#: CPython 3.12 stage.
MIN_PYTHON: dict[str, tuple[int, int]] = {"aiopquic": (3, 12)}
#: anywt against anywt: (client backend, server backend), every ordered pair
#: of two different stacks but one.  Left out: an aiopquic client against a
#: qh3 server, whose handshake does not complete (qh3 2.1 counts only the
#: Initial packet, not the picoquic datagram's zero padding after it, toward
#: its anti-amplification limit, so its first Initial datagram stays under
#: 1200 bytes and picoquic discards it; see NOTES).
_PAIRS = (
    ("aioquic", "qh3"),
    ("qh3", "aioquic"),
    ("aiopquic", "aioquic"),
    ("aioquic", "aiopquic"),
    ("qh3", "aiopquic"),
)

#: Everything the interop tests cover.  Edit here, then run ``--write``.
ROWS: tuple[Row, ...] = (
    # Not qh3: its server cannot accept Chromium (NOTES).
    *(
        Row("chromium", "client", backend, dialect, _BROWSER, "test_chromium.py::test_chromium")
        for backend in ("aioquic", "aiopquic")
        for dialect in ("draft-02", "draft-07")
    ),
    *(
        Row(
            "aioquic",
            "client",
            backend,
            "draft-02",
            _AIOQUIC,
            "test_aioquic_peer.py::test_aioquic_client_to_anywt_server",
        )
        for backend in _BACKENDS
    ),
    *(
        Row(
            "aioquic",
            "server",
            backend,
            "draft-02",
            _AIOQUIC,
            "test_aioquic_peer.py::test_anywt_client_to_aioquic_server",
        )
        for backend in _BACKENDS
    ),
    *(
        Row(
            "pywebtransport",
            "client",
            backend,
            "draft-15/16",
            _PYWT_CLIENT,
            "test_pywebtransport_peer.py::test_pywebtransport_client_to_anywt_server",
        )
        for backend in _BACKENDS
    ),
    *(
        Row(
            "pywebtransport",
            "server",
            backend,
            "draft-15/16",
            _PYWT_SERVER,
            "test_pywebtransport_peer.py::test_anywt_client_to_pywebtransport_server",
        )
        for backend in _BACKENDS
    ),
    *(
        Row(
            "anywt",
            "server",
            client,
            "draft-15/16",
            _ANYWT,
            "test_anywt_backends.py::test_anywt_across_backends",
            peer_backend=server,
        )
        for client, server in _PAIRS
    ),
)


def runs_here(row: Row, version: tuple[int, ...] = tuple(sys.version_info[:2])) -> bool:
    """The row's backends exist on this interpreter (see :data:`MIN_PYTHON`)."""
    return all(version >= MIN_PYTHON.get(backend, (0,)) for backend in row.backends)


def rows_for(test: str) -> list[Row]:
    """The rows a test runs here (``file.py::function``); no row at all is an error.

    Rows whose backend needs a newer interpreter are left out, so they are not
    collected (rather than collected and skipped).
    """
    rows = [row for row in ROWS if row.test == test]
    if not rows:
        raise LookupError(f"no matrix row names {test}")
    return [row for row in rows if runs_here(row)]


class Checklist:
    """Runs one check per feature of a row and collects every failure.

    ``run(checks)`` calls ``checks[feature]()`` for each feature of the row, in
    order; a feature without a check is a failure (the matrix would claim
    something the test does not do).  ``assert_passed()`` raises one
    AssertionError naming every failed feature with its evidence.
    """

    def __init__(self, row: Row) -> None:
        self.row = row
        self.passed: list[str] = []
        self.failures: dict[str, str] = {}

    def run(self, checks: Mapping[str, Callable[[], object]]) -> None:
        for feature in self.row.features:
            check = checks.get(feature)
            if check is None:
                self.failures[feature] = "the matrix claims it, but this test has no check for it"
                continue
            try:
                check()
            except Exception as exc:
                text = str(exc) or type(exc).__name__
                if not isinstance(exc, AssertionError):
                    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.failures[feature] = text
            else:
                self.passed.append(feature)

    def assert_passed(self, context: str = "") -> None:
        if not self.failures:
            return
        lines = [f"{self.row.id}: {len(self.failures)} of {len(self.row.features)} features failed"]
        for feature, text in self.failures.items():
            lines.append(f"--- {feature} ({FEATURES[feature][1]}):\n{text}")
        if self.passed:
            lines.append(f"passed: {', '.join(self.passed)}")
        if context:
            lines.append(context)
        raise AssertionError("\n".join(lines))


# --------------------------------------------------------------------------
# The README section
# --------------------------------------------------------------------------

NOTES = """\
Known limitation, not tested: **the qh3 backend as a server cannot accept
Chromium.** Chromium uses a zero-length source connection id and qh3 2.1
answers it with a random 8-byte destination connection id, so the handshake
never completes; this is a qh3 bug anywt cannot work around. Browser tests
therefore run against anywt's server on the aioquic and aiopquic backends;
use `backend="aioquic"` (or `"aiopquic"` on CPython >= 3.12) for servers
that browsers connect to.

Known limitation, not tested: **anywt's client on the aiopquic backend
cannot connect to a qh3 server** (the other way round works and is tested).
picoquic pads its client Initial datagram to 1252 bytes with zero bytes
after the Initial packet (RFC 9000 section 14.1 allows it); qh3 2.1 counts
only the packet (about 270 bytes) toward its anti-amplification limit, not
the datagram (section 8.1), so it answers with an Initial datagram of about
820 bytes instead of at least 1200, which picoquic discards ("Server initial
too short"); the handshake stalls and usually times out. A qh3 bug; anywt's
aiopquic client works with aioquic, pywebtransport and anywt's other
servers.

Other peer limits the table reflects: aioquic's H3 layer speaks draft-02 only
(no session flow control, one session per connection); Chromium 156 offers
draft-02 by default and draft-07 only with
`--enable-features=EnableWebTransportDraft07`, never flow control;
pywebtransport 0.21 speaks draft-15 with session flow control, and only
its client can open several sessions on one connection
(`WebTransportConnection.create_session()`); anywt's client opens one
session per connection."""


def render() -> str:
    """The README section between the markers (markers excluded)."""
    keys = list(FEATURES)
    header = ["peer", "direction", "anywt backend", "dialect", *(FEATURES[k][0] for k in keys)]
    lines = [
        "## Interop matrix",
        "",
        "What the interop tests (`tests/interop/`) prove on every CI run against peers",
        "nobody on this project wrote. ✓ = checked at both ends (what the peer reports",
        "and what anywt saw); · = not covered. Generated from `tests/interop/matrix.py`",
        "(`ROWS`), which the tests themselves run from;",
        "`python tests/interop/matrix.py --write` updates this section and",
        "`tests/interop/test_matrix.py` fails when it is stale.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in ROWS:
        cells = [
            PEERS[row.peer][0],
            row.direction,
            row.backend_text,
            row.dialect,
            *("✓" if k in row.features else "·" for k in keys),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Peers:", ""]
    for name, text in PEERS.values():
        lines.append(f"- **{name}**: {text}.")
    lines += ["", "Columns:", ""]
    for key in keys:
        head, text = FEATURES[key]
        lines.append(f"- **{head}**: {text}.")
    lines += [
        "",
        "Run them: `pytest tests/interop` (needs `apt-get install chromium` and a",
        "CPython >= 3.12, e.g. `pyenv install 3.12`; without them those tests skip,",
        "and with `ANYWT_REQUIRE_INTEROP=1`, as CI sets, the skips fail).",
        "The aiopquic rows run when pytest itself runs on CPython >= 3.12 with",
        "`anywt[aiopquic]` installed (CI's 3.12 stage); an older Python does not",
        "collect them.",
        "",
        NOTES,
    ]
    return "\n".join(lines)


def updated_readme(text: str) -> str:
    """``text`` with the section between the markers replaced (appended if absent)."""
    section = f"{START}\n{render()}\n{END}"
    start = text.find(START)
    end = text.find(END)
    if start == -1 or end == -1 or end < start:
        return text.rstrip("\n") + "\n\n" + section + "\n"
    return text[:start] + section + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the interop matrix into README.md.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="update README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 if README.md is stale")
    args = parser.parse_args(argv)
    if not args.write and not args.check:
        print(render())
        return 0
    current = README.read_text("utf-8")
    wanted = updated_readme(current)
    if args.check:
        if current != wanted:
            print("README.md interop matrix is stale: python tests/interop/matrix.py --write")
            return 1
        return 0
    if current != wanted:
        README.write_text(wanted, "utf-8")
        print("README.md updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
