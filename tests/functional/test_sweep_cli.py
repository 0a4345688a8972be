"""``voicebridge sweep`` in process, configured from the environment exactly as the deployed sweeper is (moto, the
emulator over HTTP, the real bridge handler opening the calls); and the sweeper's ``SweepLeftOpen`` metric, which
the left-open alarm watches, published by its real Lambda handler."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from bridge import sweeper
from bridge.adapters.dynamodb import SWEEP_PENDING, SWEPT, DynamoContactStore
from bridge.models import ContactState, ContactStatus
from tests.events_builder import call_events, lambda_records
from tests.functional.conftest import Stack
from voicebridge.cli import main
from voicebridge.feed.replay import ReplayContext

pytestmark = pytest.mark.functional
REFUSE_CLOSE = [{"action": "status", "status": 503, "method": "PATCH", "path": "/state$", "times": 1000}]


@pytest.fixture(autouse=True)
def _fresh_sweeper() -> Iterator[None]:
    sweeper.reset()
    yield
    sweeper.reset()


def state(stack: Stack, contact_id: str) -> ContactState:
    store = DynamoContactStore(boto3.client("dynamodb"), stack.environment["CONTACT_TABLE"])
    return store.load_many([contact_id])[contact_id]


def age(stack: Stack, contact_id: str, seconds: int) -> None:
    """Pretend the contact's last activity was ``seconds`` ago, by the clock and (where the item records it) by
    its position on the stream: a rewrite through the bridge's own PutItem."""
    current = state(stack, contact_id)
    changes = {"updated_at": current.updated_at - seconds}
    if getattr(current, "last_arrival", 0):
        changes["last_arrival"] = current.last_arrival - seconds
    store = DynamoContactStore(boto3.client("dynamodb"), stack.environment["CONTACT_TABLE"])
    store.save(current.evolve(**changes), expected_version=current.version)


def open_call(stack: Stack, contact_id: str) -> str:
    """A call whose COMPLETED never came; returns its interaction id."""
    assert stack.invoke(lambda_records(call_events(contact_id, 2, end=""))) == {"batchItemFailures": []}
    (interaction,) = stack.interactions(contact_id)
    assert interaction["state"] != "closed_complete"
    interaction_id = state(stack, contact_id).interaction_id
    assert interaction_id
    return interaction_id


def sweep(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    status = main(["sweep", *argv])
    return status, capsys.readouterr().out.splitlines()


def test_idle_minutes_0_closes_a_call_whose_completed_never_came(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    interaction_id = open_call(stack, "c-open")

    status, out = sweep(capsys, "--idle-minutes", "0")

    assert status == 0
    assert out[0].split() == ["c-open", interaction_id, "closed"]
    assert out[-1].startswith("swept (every open contact): closed 1 ")
    (interaction,) = stack.interactions("c-open")
    assert interaction["state"] == "closed_complete"
    assert interaction["recording_url"] == "https://example.my.connect.aws/contact-trace-records/details/c-open"
    assert (state(stack, "c-open").status, state(stack, "c-open").close_sequence_number) == (
        ContactStatus.CLOSED,
        SWEPT,
    )
    # swept contacts leave the index: a second sweep has nothing to do
    status, out = sweep(capsys, "--idle-minutes", "0")
    assert (status, out[0].startswith("swept (every open contact): closed 0 ")) == (0, True)


def test_without_idle_minutes_the_functions_idle_rule_applies(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDLE_CLOSE_MINUTES", "30")
    open_call(stack, "c-quiet")
    open_call(stack, "c-talking")
    # 36: past 30 by more than one 5-minute activity bucket (the index query takes whole buckets only)
    age(stack, "c-quiet", 36 * 60)
    age(stack, "c-talking", 29 * 60)

    status, out = sweep(capsys)

    assert status == 0
    assert [line.split()[0] for line in out[:-1]] == ["c-quiet"]
    assert out[-1].startswith("swept (idle for at least 30 min): closed 1 ")
    assert stack.interactions("c-quiet")[0]["state"] == "closed_complete"
    assert stack.interactions("c-talking")[0]["state"] != "closed_complete"
    assert state(stack, "c-talking").status is ContactStatus.OPEN


def test_dry_run_lists_what_would_be_closed_and_writes_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    interaction_id = open_call(stack, "c-listed")
    before = state(stack, "c-listed")
    requests_before = stack.emulator.stats()["total"]

    status, out = sweep(capsys, "--idle-minutes", "0", "--dry-run")

    assert status == 0
    assert out[0].split() == ["c-listed", interaction_id, "would_close"]
    assert out[-1] == "dry run (every open contact): 1 contact(s) would be closed; nothing was written"
    assert state(stack, "c-listed") == before
    assert stack.emulator.stats()["total"] == requests_before  # not one request to ServiceNow
    assert stack.interactions("c-listed")[0]["state"] != "closed_complete"


def test_a_refused_close_exits_1_and_the_contact_waits_for_the_next_sweep(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    interaction_id = open_call(stack, "c-refused")
    stack.emulator.add_fault_rules(REFUSE_CLOSE)

    status, out = sweep(capsys, "--idle-minutes", "0")

    assert status == 1
    assert out[0].split() == ["c-refused", interaction_id, "error", "(ServiceNowUnavailableError)"]
    assert " failed 1 " in out[-1]
    assert stack.interactions("c-refused")[0]["state"] != "closed_complete"
    pending = state(stack, "c-refused")
    assert (pending.status, pending.close_sequence_number) == (ContactStatus.CLOSED, SWEEP_PENDING)

    stack.emulator.clear_faults()
    status, out = sweep(capsys, "--idle-minutes", "0")

    assert status == 0
    assert out[0].split() == ["c-refused", interaction_id, "closed"]
    assert stack.interactions("c-refused")[0]["state"] == "closed_complete"
    assert state(stack, "c-refused").close_sequence_number == SWEPT


def test_a_close_refused_for_good_exits_1_once_and_is_not_retried(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    interaction_id = open_call(stack, "c-gone")
    stack.emulator.add_fault_rules([{**REFUSE_CLOSE[0], "status": 404}])

    status, out = sweep(capsys, "--idle-minutes", "0")

    assert status == 1
    assert out[0].split() == ["c-gone", interaction_id, "error", "(ServiceNowRejectedError)"]
    assert state(stack, "c-gone").close_sequence_number == SWEPT  # retrying cannot help: out of the index
    stack.emulator.clear_faults()
    status, out = sweep(capsys, "--idle-minutes", "0")
    assert (status, len(out)) == (0, 1)  # only the summary: nothing left to sweep


def test_max_contacts_bounds_one_run_and_says_so(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    open_call(stack, "c-one")
    open_call(stack, "c-two")

    status, out = sweep(capsys, "--idle-minutes", "0", "--max-contacts", "1")

    assert status == 0
    assert len(out) == 3 and out[-1] == "stopped at --max-contacts 1: run sweep again for the rest"
    status, out = sweep(capsys, "--idle-minutes", "0")
    assert (status, len(out)) == (0, 2)  # the other one, and the summary
    assert {stack.interactions(c)[0]["state"] for c in ("c-one", "c-two")} == {"closed_complete"}


def test_the_sweeper_publishes_the_contacts_it_left_open(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the left-open alarm (template.yaml SweeperLeftOpenAlarm) watches, from the deployed handler: a close
    ServiceNow refuses counts until a later sweep gets it through."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # As the template configures the function (the module's Metrics() read the environment when it was imported).
    monkeypatch.setattr(sweeper.metrics, "namespace", "voicebridge")
    monkeypatch.setattr(sweeper.metrics, "service", "voicebridge-sweeper")
    open_call(stack, "c-stuck")
    age(stack, "c-stuck", 2 * 3600)

    def scheduled_sweep() -> dict[str, float]:
        capsys.readouterr()
        sweeper.lambda_handler({"detail-type": "Scheduled Event"}, ReplayContext())
        documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        (document,) = [d for d in documents if "SweepLeftOpen" in d]
        assert document["service"] == "voicebridge-sweeper"
        assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "voicebridge"
        return {name: document[name][0] for name in ("SweepLeftOpen", "SweepErrors", "InteractionsSwept")}

    stack.emulator.add_fault_rules(REFUSE_CLOSE)
    assert scheduled_sweep() == {"SweepLeftOpen": 1.0, "SweepErrors": 1.0, "InteractionsSwept": 0.0}
    stack.emulator.clear_faults()
    assert scheduled_sweep() == {"SweepLeftOpen": 0.0, "SweepErrors": 0.0, "InteractionsSwept": 1.0}
