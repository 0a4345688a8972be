"""``make demo-historical`` (``python -m voicebridge.feed.backfill``): the fixtures imported and printed as stored."""

from __future__ import annotations

import pytest

from voicebridge.feed.backfill import run_demo


def test_the_historical_demo_prints_what_servicenow_stored_with_loudness_and_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_demo() == 0
    out = capsys.readouterr().out
    assert "backfill: 4 files · imported 3 · skipped 1" in out
    assert out.count("· closed_complete ·") == 3
    assert "Hi, my name is [PII] and I want to pay my bill.   loudness [66.56,72.1,75.83,70.02,68.4]" in out
    assert "[agent only] Post-contact summary: The customer paid the bill by card" in out
    assert "conversation started: 2026-03-14 10:00:02" in out
