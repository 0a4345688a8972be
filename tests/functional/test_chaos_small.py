"""A small chaos soak in the suite (issue 4 §4): the real handler, moto, the emulator over HTTP, with ServiceNow
faults, injected crashes and duplicate deliveries; the goals asserted on ServiceNow's final state.

Fixed seeds everywhere; thread scheduling still changes which request meets which fault, so only the goals are
asserted, never fault counts. ``make chaos`` runs the full-size soak (200 calls x 60 segments).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from voicebridge.soak.chaos import SoakOptions, SoakReport, format_report, run_soak

pytestmark = pytest.mark.functional

# The fault mix at 12 calls x 15 segments; crashes and duplicates are more frequent than the soak's 5 % so
# that ~20 invocations surely contain some. INFO is the deployed default level, so the leak check covers it.
SMALL = SoakOptions(
    calls=12,
    segments=15,
    batch_size=25,
    fault_rate=0.10,
    crash_rate=0.25,
    duplicate_rate=0.25,
    seed=11,
    log_level="INFO",
)


def assert_goals(report: SoakReport) -> None:
    figures = format_report(report)
    assert report.calls == 12 and report.segments == 12 * 15, figures
    assert report.lost == 0 and report.lost_notes == 0, figures
    # No duplicates at all: a crash while a timed-out write is still landing is waited out on redelivery (the
    # soak's delays, 0.6-1.5 s, are inside its settle time), so even the README's late-apply window stays empty.
    assert report.duplicate_interactions == 0, figures
    assert report.duplicate_messages == 0, figures
    assert report.unclosed == 0, figures
    assert report.parked == 0 and report.parking_queue_messages == 0, figures
    assert report.mismatched == 0, figures
    assert report.given_up == [], figures
    assert report.swallowed_crashes == 0, figures  # a crash in a contact thread ends the invocation
    assert report.log_lines > 0 and report.leaked == 0, figures  # logs were captured; no transcript text in them
    assert report.goals_met, figures


def test_small_soak_without_read_timeouts_meets_the_goals() -> None:
    # 429/500/503 and applied-then-500/dropped answers, crashes before and after any adapter call, duplicates:
    # nothing is ever left unanswered, so not even the documented window may produce a duplicate.
    report = run_soak(replace(SMALL, timeouts=False))
    assert_goals(report)
    assert report.duplicate_messages == report.duplicate_interactions == report.unclosed == 0, format_report(report)
    assert report.crashes + report.crashes_armed_not_reached > 0, format_report(report)
    assert report.duplicate_deliveries + report.stale_slices > 0, format_report(report)


def test_small_soak_with_read_timeouts_meets_the_goals() -> None:
    # The full mix: 10 % of the faults are read timeouts (the server applies the request after the client gave up).
    # Seed 2 puts some on POST /messages while an invocation crashes (before the settle fix it doubled messages).
    assert_goals(run_soak(replace(SMALL, seed=2)))


def test_small_production_soak_counts_every_duplicate_it_cannot_avoid() -> None:
    """Issue 9 §3 in small: sessions, throttled read-backs after applied-then-500, busy-session 202s, a quota
    mid-run and read ACLs hiding a share of the calls. Outside the ACL'd calls nothing may be doubled; inside them
    (README window 1) every duplicate must have been counted by the bridge."""
    report = run_soak(replace(SMALL, profile="production", seed=5))
    figures = format_report(report)
    assert report.lost == 0 and report.lost_notes == 0, figures
    assert report.unexplained_duplicate_messages == 0 and report.unexplained_duplicate_interactions == 0, figures
    assert report.unexplained_unclosed == 0, figures
    assert report.uncounted == 0, figures
    assert report.filtered_calls > 0 and report.quota_hit, figures
    assert report.faults.get("rate_limited", 0) > 0, figures
    assert report.given_up == [] and report.leaked == 0, figures
    # Open defect (README "Reliability", window 1): now and then a line of an ACL-hidden call is posted after its
    # interaction closed and is parked servicenow_rejected (never silently lost: it is in the parking queue). Only
    # that is tolerated here; anything else parked fails.
    assert set(report.parked_reasons) <= {"servicenow_rejected"}, figures
