"""The end-to-end runner's arithmetic, without running a stack (fast; part of ``pytest bench``).

``bench/run.py`` itself is exercised with ``python bench/run.py --quick``.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))

import common
import run


@pytest.mark.parametrize("size", [0, 1, common.CHUNK_SIZE - 1, common.CHUNK_SIZE, 3 * 65536 + 17])
def test_bulk_chunks_match_the_expected_reply(size: int) -> None:
    chunks = common.bulk_chunks(size)
    assert chunks[0][0] == common.CMD_BULK
    assert [last for _, last in chunks].count(True) == 1
    assert chunks[-1][1] is True
    body = b"".join(chunk for chunk, _ in chunks[1:])
    assert len(body) == size
    assert common.expected_bulk_reply(size) == struct.pack("!QI", size, zlib.crc32(body))


def test_bulk_sink_answers_what_the_client_expects() -> None:
    counters = common.Counters()
    sink = common.BulkSink(counters)
    for chunk, _ in common.bulk_chunks(200_000)[1:]:
        sink.feed(memoryview(chunk))
    assert sink.finish() == common.expected_bulk_reply(200_000)
    assert counters.bulk[-1]["bytes"] == 200_000


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert common.percentile(values, 0.5) == 5.0
    assert common.percentile(values, 0.9) == 9.0
    assert common.percentile([], 0.5) != common.percentile([], 0.5)  # NaN


def _data(rounds: list[dict[str, dict[str, float]]]) -> dict:
    return {
        "rounds": rounds,
        "stacks": sorted({stack for r in rounds for stack in r}),
        "settings": {"sessions": 1000},
    }


def test_ratios_are_taken_per_round_then_the_median() -> None:
    rounds = [
        {"a": {"x": 10.0}, "b": {"x": 5.0}},  # 2.0
        {"a": {"x": 3.0}, "b": {"x": 3.0}},  # 1.0
        {"a": {"x": 8.0}, "b": {"x": 2.0}},  # 4.0
    ]
    summary = run.ratios(rounds, "a", "b", "x")
    assert summary is not None
    assert (summary.median, summary.low, summary.high, summary.n) == (2.0, 1.0, 4.0, 3)
    difference = run.ratios(rounds, "a", "b", "x", diff=True)
    assert difference is not None and difference.median == 5.0
    assert run.ratios(rounds, "a", "missing", "x") is None


def test_targets_pass_and_fail_lines() -> None:
    raw = {"bulk_mb_s": 10.0, "dgram_rx_per_s": 1000.0, "bulk_server_cpu_s_per_mb": 0.1}
    raw["kb_per_session"] = 50.0
    ours = {"bulk_mb_s": 9.9, "dgram_rx_per_s": 900.0, "bulk_server_cpu_s_per_mb": 0.104}
    ours |= {"kb_per_session": 75.0, "sessions_held": 1000, "sessions_opened": 1000}
    trio = dict(ours, bulk_mb_s=8.0)
    rounds = [
        {"anywt-qh3-asyncio": ours, "raw-qh3": raw, "anywt-qh3-trio": trio},
    ]
    lines = run.evaluate_targets(_data(rounds))
    text = "\n".join(lines)
    assert "PASS layer cost on qh3: stream MB/s" in text
    assert "FAIL layer cost on qh3: datagrams rx/s" in text
    assert "PASS layer cost on qh3: server CPU per MB" in text
    assert "FAIL trio vs asyncio on qh3: outside: bulk_mb_s 0.81x" in text
    assert "PASS 1000 sessions held on anywt-qh3-asyncio" in text
    assert "FAIL memory per idle session on qh3" in text


def test_report_renders_every_stack_and_failures() -> None:
    rounds = [{"raw-qh3": {"bulk_mb_s": 3.0, "errors": {"sessions": "timed out"}}}]
    data = _data(rounds)
    data.update(
        machine={
            "cpu": "cpu",
            "cores": 2,
            "memory_gb": 1,
            "os": "os",
            "load_before": "1",
            "load_after": "1",
            "pythons": {"main": "3.11"},
        },
        versions="v",
        date="today",
        skipped={"pywebtransport": "no 3.12"},
    )
    data["settings"] = {
        "rounds": 1,
        "setup_count": 5,
        "bulk_bytes": 1e6,
        "slow_bulk_bytes": 1e6,
        "datagram_seconds": 1,
        "streams": 100,
        "stream_bytes": 8000,
        "sessions": 20,
        "concurrency": 10,
    }
    markdown, _ = run.build_report(data)
    assert "| `raw-qh3` |" in markdown
    assert "`raw-qh3` sessions: timed out" in markdown
    assert "`pywebtransport` not measured: no 3.12" in markdown
