"""``voicebridge replay --realtime`` delivers as the event source mapping does, so the emulator's live view fills as
the call goes (README "Watch a call arrive"): the README's command, run in process through the real handler with
moto and the emulator over HTTP, on a fake clock (the 4-minute call takes no real time)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from voicebridge import cli
from voicebridge.emulator import start_emulator
from voicebridge.feed import replay, shard
from voicebridge.feed.fixtures import StreamRecord

pytestmark = pytest.mark.functional

FIXTURE = "events/full-call.jsonl"  # 73 records over 244 s: 45 transcript turns, 4 notes
CALL_SECONDS = 244
STORED = 45 + 4


@dataclass
class LiveViewWatch:
    """A fake clock whose every sleep first reads what the live view shows (its JSON, as the page polls it)."""

    url: str
    now: float = 0.0
    shown: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the call, messages shown)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        interactions = requests.get(f"{self.url}/ui/api/interactions", timeout=10).json()["interactions"]
        self.shown.append((self.now, sum(item["message_count"] for item in interactions)))
        self.now += seconds


@pytest.fixture(autouse=True)
def _in_repository(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    monkeypatch.chdir(request.config.rootpath)


def run_replay(monkeypatch: pytest.MonkeyPatch, watch: LiveViewWatch, *extra: str) -> tuple[str, list[Any]]:
    """``voicebridge replay FIXTURE --servicenow-url … --realtime EXTRA`` with the shard driver on ``watch``'s
    clock; returns its report (stdout) and the (speed, batching window) replay asked the driver for."""
    asked: list[tuple[float, float]] = []

    def polling(records: Sequence[StreamRecord], speed: float, batching_window_s: float) -> shard.Polling:
        asked.append((speed, batching_window_s))
        return shard.arrival_polling(records, speed, batching_window_s, clock=watch.clock, sleep=watch.sleep)

    monkeypatch.setattr(replay, "arrival_polling", polling)
    arguments = ["--servicenow-url", watch.url, "--user", "admin", "--password", "admin", "--realtime", *extra]
    report = io.StringIO()
    with contextlib.redirect_stdout(report):  # not capsys: the bridge logger may keep its stream past the test
        assert cli.main(["replay", FIXTURE, *arguments]) == 0
    return report.getvalue(), asked


def invocations(report: str) -> int:
    line = next(line for line in report.splitlines() if line.startswith("records "))
    return int(line.split(" · ")[1].removeprefix("invocations "))


def test_realtime_fills_the_live_view_as_the_call_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    with start_emulator() as emulator:
        watch = LiveViewWatch(emulator.url)
        report, asked = run_replay(monkeypatch, watch)
        assert asked == [(1.0, 0.0)]
        final = requests.get(f"{emulator.url}/ui/api/interactions", timeout=10).json()["interactions"]
    assert [(item["message_count"], item["state"]) for item in final] == [(STORED, "closed_complete")]
    # many small invocations over the call, not one batch at its end
    assert invocations(report) > 30
    # the view grows all along: messages within the first minute, more every minute, all of them by the end
    by_minute = [max((n for at, n in watch.shown if at < minute * 60), default=0) for minute in range(1, 5)]
    assert 0 < by_minute[0] < by_minute[1] < by_minute[2] < by_minute[3] <= STORED
    counts = [n for _, n in watch.shown]
    assert counts == sorted(counts) and len(set(counts)) > 20
    assert watch.now < CALL_SECONDS + 5  # delivered as it arrived: the last records within a poll of their arrival


def test_the_batching_window_gathers_records_before_each_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    with start_emulator() as emulator:
        watch = LiveViewWatch(emulator.url)
        report, asked = run_replay(monkeypatch, watch, "--batching-window", "30")
        assert asked == [(1.0, 30.0)]
    count = invocations(report)
    assert CALL_SECONDS // 30 <= count <= CALL_SECONDS // 30 + 2  # about one invocation per 30 s window


@pytest.mark.parametrize("value", ["-1", "301", "soon"])
def test_a_batching_window_lambda_would_refuse_is_one_line_and_exit_2(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["replay", FIXTURE, "--realtime", "--batching-window", value])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--batching-window" in error and "from 0 to 300" in error


def test_replay_options_without_a_pace_deliver_full_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """No --realtime/--speed: the records are all on the stream already; the batching window changes nothing."""
    from voicebridge.feed.fixtures import load_fixtures

    asked: list[Any] = []
    monkeypatch.setattr(replay, "arrival_polling", lambda *args: asked.append(args))
    records = load_fixtures([FIXTURE])
    report = replay.replay(records, replay.ReplayOptions(batch_size=50, batching_window_s=30.0))
    assert report.delivery.invocations == 2 and not asked
