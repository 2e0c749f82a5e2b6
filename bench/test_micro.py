"""Micro-benchmarks of the foundation codecs, pure vs compiled in the same run.

Each group holds the pure and the compiled twin (and, for varint decoding,
aioquic's C ``Buffer`` as a reference point); ``bench/conftest.py`` prints the
ratios at the end.  Every benchmark checks its result once before timing.
"""

from __future__ import annotations

import random

import pytest

N_VARINTS = 1000


def _mixed_values(n: int, seed: int = 1) -> list[int]:
    """Varints of all four lengths, weighted like real traffic (mostly short)."""
    rng = random.Random(seed)
    spans = [(0, 63)] * 4 + [(64, 16383)] * 3 + [(16384, 2**30 - 1)] * 2 + [(2**30, 2**62 - 1)]
    return [rng.randint(*rng.choice(spans)) for _ in range(n)]


def _encode_all(values: list[int]) -> bytes:
    out = bytearray()
    for value in values:
        if value < 2**6:
            out += value.to_bytes(1, "big")
        elif value < 2**14:
            out += (value | 0x4000).to_bytes(2, "big")
        elif value < 2**30:
            out += (value | 0x8000_0000).to_bytes(4, "big")
        else:
            out += (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    return bytes(out)


VALUES = _mixed_values(N_VARINTS)
BUFFER = _encode_all(VALUES)
OFFSETS: list[int] = []
_pos = 0
for _value in VALUES:
    OFFSETS.append(_pos)
    _pos += len(_encode_all([_value]))


def _tag(benchmark, group: str, impl_name: str) -> None:
    benchmark.group = group
    benchmark.extra_info["impl"] = impl_name


# -- varints ---------------------------------------------------------------------------------


def test_varint_pull_1000(benchmark, impl):
    _tag(benchmark, "varint pull x1000 (ByteReader)", impl.name)
    reader_cls = impl.varint.ByteReader

    def run() -> int:
        reader = reader_cls(BUFFER)
        pull = reader.pull_varint
        last = 0
        for _ in range(N_VARINTS):
            last = pull()
        return last

    assert run() == VALUES[-1]
    benchmark(run)


def test_varint_pull_1000_aioquic(benchmark):
    buffer_module = pytest.importorskip("aioquic.buffer")
    _tag(benchmark, "varint pull x1000 (ByteReader)", "aioquic")
    buffer_cls = buffer_module.Buffer

    def run() -> int:
        buf = buffer_cls(data=BUFFER)
        pull = buf.pull_uint_var
        last = 0
        for _ in range(N_VARINTS):
            last = pull()
        return last

    assert run() == VALUES[-1]
    benchmark(run)


def test_varint_decode_1000(benchmark, impl):
    _tag(benchmark, "varint decode_varint x1000", impl.name)
    decode = impl.varint.decode_varint

    def run() -> int:
        total = 0
        for pos in OFFSETS:
            total += decode(BUFFER, pos)[0]
        return total

    assert run() == sum(VALUES)
    benchmark(run)


def test_varint_encode_1000(benchmark, impl):
    _tag(benchmark, "varint encode_varint x1000", impl.name)
    encode = impl.varint.encode_varint

    def run() -> bytearray:
        out = bytearray()
        for value in VALUES:
            encode(value, out)
        return out

    assert bytes(run()) == BUFFER
    benchmark(run)


# -- capsules --------------------------------------------------------------------------------


def _small_capsules() -> tuple[bytes, int]:
    """1000 small capsules: datagrams, flow-control updates and GREASE."""
    rng = random.Random(2)
    parts = []
    known = 0
    for i in range(1000):
        kind = i % 10
        if kind < 7:  # DATAGRAM of 20..100 bytes
            payload = rng.randbytes(rng.randint(20, 100))
            parts.append(_encode_all([0x00, len(payload)]) + payload)
            known += 1
        elif kind < 9:  # WT_MAX_DATA
            value = _encode_all([rng.randint(0, 2**40)])
            parts.append(_encode_all([0x190B4D3D, len(value)]) + value)
            known += 1
        else:  # GREASE, skipped
            payload = rng.randbytes(rng.randint(5, 56))
            parts.append(_encode_all([0x29 * rng.randint(1, 2**30) + 0x17, len(payload)]) + payload)
    return b"".join(parts), known


SMALL_CAPSULES, SMALL_KNOWN = _small_capsules()
BIG_DATAGRAM = random.Random(3).randbytes(65536)
_BIG_CAPSULE = _encode_all([0x00, len(BIG_DATAGRAM)]) + BIG_DATAGRAM
BIG_SLICES = [_BIG_CAPSULE[i : i + 1200] for i in range(0, len(_BIG_CAPSULE), 1200)]


def test_capsule_parse_small(benchmark, impl):
    _tag(benchmark, "capsule parse 1000 small, one feed", impl.name)
    parser_cls = impl.capsule.CapsuleParser

    def run() -> int:
        return len(parser_cls().feed(SMALL_CAPSULES))

    assert run() == SMALL_KNOWN
    benchmark(run)


def test_capsule_parse_64k_datagram(benchmark, impl):
    _tag(benchmark, "capsule parse 64 KiB DATAGRAM in 1200 B slices", impl.name)
    parser_cls = impl.capsule.CapsuleParser

    def run() -> list:
        parser = parser_cls(max_capsule_size=65536)
        out = []
        for piece in BIG_SLICES:
            out += parser.feed(piece)
        return out

    assert run() == [(0x00, BIG_DATAGRAM)]
    benchmark(run)


# -- SETTINGS --------------------------------------------------------------------------------

# Chromium 156's SETTINGS (reference/chromium.md) plus a GREASE id, and the
# draft-07 WT_MAX_SESSIONS it adds behind its feature flag.
CHROMIUM_SETTINGS = [
    (0x01, 65536),
    (0x06, 16384),
    (0x07, 100),
    (0x33, 1),
    (0xFFD277, 1),
    (0x2B603742, 1),
    (0xC671706A, 16),
    (0x1F * 0x2A6B1C3D + 0x21, 0x5A5A),
]
SETTINGS_PAYLOAD = b"".join(_encode_all([k, v]) for k, v in CHROMIUM_SETTINGS)


def test_settings_decode(benchmark, impl):
    _tag(benchmark, "SETTINGS decode (Chromium)", impl.name)
    parse = impl.frames.parse_settings
    assert len(parse(SETTINGS_PAYLOAD)) == len(CHROMIUM_SETTINGS) - 1
    benchmark(parse, SETTINGS_PAYLOAD)


def test_settings_decode_aioquic(benchmark):
    connection = pytest.importorskip("aioquic.h3.connection")
    _tag(benchmark, "SETTINGS decode (Chromium)", "aioquic")
    parse = connection.parse_settings
    assert len(parse(SETTINGS_PAYLOAD)) == len(CHROMIUM_SETTINGS)
    benchmark(parse, SETTINGS_PAYLOAD)
