"""`voicebridge trace`: the Logs Insights query (botocore Stubber: moto does not evaluate Insights queries), stack
resolution (Stubber), the DynamoDB item and the parking-queue peek (moto), and the printed report."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from bridge.adapters.dynamodb import to_item
from bridge.adapters.parking import SqsParking
from bridge.models import ContactState, ContactStatus, PendingEntry, SentSet
from bridge.ports import ParkedItem
from voicebridge.cli import build_parser
from voicebridge.operate.trace import (
    CONTACT_TIMELINE_QUERY,
    Clients,
    Targets,
    TraceError,
    TraceOptions,
    format_timeline,
    parse_since,
    peek_parked,
    resolve_stack,
    run,
    run_query,
    timeline_query,
    trace,
)
from voicebridge.template import contact_table_create_kwargs

pytestmark = pytest.mark.unit

CONTACT = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"
OTHER = "0d1e2f3a-0000-4000-8000-000000000000"
LOG_GROUP = "/aws/lambda/voicebridge-bridge"
NOW = 1_800_000_000.0
TABLE = "contacts"


def _row(**fields: str) -> list[dict[str, str]]:
    return [{"field": k, "value": v} for k, v in fields.items()] + [{"field": "@ptr", "value": "p"}]


ROWS = [
    _row(**{"@timestamp": "2027-01-15 08:00:00.100"}, message="servicenow call", operation="create_interaction",
         method="POST", status="200", latency_ms="41.5", transaction_id="txn-create", sequence_number="100",
         lag_ms="850"),
    _row(**{"@timestamp": "2027-01-15 08:00:00.120"}, message="interaction open", step="open", outcome="opened",
         interaction_id="i-1", sequence_number="100", lag_ms="850"),
    _row(**{"@timestamp": "2027-01-15 08:00:01.000"}, message="servicenow call", operation="post_messages",
         method="POST", status="503", latency_ms="1200", transaction_id="txn-503", sequence_number="200"),
    _row(**{"@timestamp": "2027-01-15 08:00:01.010"}, message="contact will be redelivered", step="contact",
         outcome="retry", error_class="ServiceNowUnavailableError", sequence_number="200", lag_ms="65000"),
    _row(**{"@timestamp": "2027-01-15 08:00:05.000"}, message="messages sent", step="send", outcome="sent",
         sequence_number="200"),
    _row(**{"@timestamp": "2027-01-15 08:00:09.000"}, message="interaction closed", step="close", outcome="closed",
         sequence_number="300"),
]  # fmt: skip


def _stub_query(stubber: Stubber, rows: list[list[dict[str, str]]], statuses: tuple[str, ...] = ("Running",)) -> None:
    stubber.add_response(
        "start_query",
        {"queryId": "q-1"},
        {
            "logGroupName": LOG_GROUP,
            "startTime": int(NOW - 86400),
            "endTime": int(NOW) + 1,
            "queryString": timeline_query(CONTACT),
            "limit": 10000,
        },
    )
    for status in statuses:
        stubber.add_response("get_query_results", {"status": status, "results": []}, {"queryId": "q-1"})
    stubber.add_response("get_query_results", {"status": "Complete", "results": rows}, {"queryId": "q-1"})


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def logs() -> Any:
    return boto3.client("logs", region_name="us-east-1")


def _table_with(state: ContactState | None) -> Any:
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(**contact_table_create_kwargs(table_name=TABLE))
    if state is not None:
        dynamodb.put_item(TableName=TABLE, Item=to_item(state))
    return dynamodb


def _queue_with(items: list[ParkedItem]) -> tuple[Any, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="parking")["QueueUrl"]
    if items:
        SqsParking(sqs, url).park(items)
    return sqs, url


def _parked(contact: str | None, reason_class: str, sequence: str) -> ParkedItem:
    record = {"sequenceNumber": sequence, "partitionKey": "k", "approximateArrivalTimestamp": 1.0, "data": "c2VjcmV0"}
    error = {"error_class": "ServiceNowRejectedError", "status": 400, "transaction_id": "txn-400"}
    return ParkedItem(reason_class, "rejected by ServiceNow", (record,), contact, error)


# -- the query --------------------------------------------------------------------------------------------------


def test_timeline_query_fills_in_the_contact_and_rejects_anything_that_could_inject() -> None:
    query = timeline_query(CONTACT)
    assert f'filter contact_id = "{CONTACT}"' in query
    assert query == CONTACT_TIMELINE_QUERY.replace('"CONTACT_ID"', f'"{CONTACT}"')
    for bad in ('x" or 1=1 | fields @message', "", "a b", "id\n| limit 1"):
        with pytest.raises(TraceError):
            timeline_query(bad)


def test_query_selects_every_key_the_bridge_logs_for_a_contact() -> None:
    fields = {name.strip() for name in CONTACT_TIMELINE_QUERY.splitlines()[0].removeprefix("fields ").split(",")}
    assert {
        "@timestamp",
        "step",
        "outcome",
        "operation",
        "status",
        "transaction_id",
        "latency_ms",
        "sequence_number",
        "interaction_id",
        "lag_ms",
    } <= fields
    assert "@message" not in fields  # only named keys, never whole lines


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - 86400),
        ("30m", NOW - 1800),
        ("7d", NOW - 7 * 86400),
        ("90s", NOW - 90),
        ("1700000000", 1_700_000_000.0),
        ("2027-01-15T08:00:00Z", 1_800_000_000.0),
        ("2027-01-15T08:00:00", 1_800_000_000.0),
        ("2027-01-15T09:00:00+01:00", 1_800_000_000.0),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == expected


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(TraceError, match="--since"):
        parse_since("yesterday", NOW)


def test_run_query_polls_until_complete_and_drops_ptr(logs: Any) -> None:
    stubber = Stubber(logs)
    _stub_query(stubber, ROWS, statuses=("Scheduled", "Running"))
    sleeps: list[float] = []
    with stubber:
        rows = run_query(logs, LOG_GROUP, timeline_query(CONTACT), NOW - 86400, NOW, poll_s=0.5, sleep=sleeps.append)
        stubber.assert_no_pending_responses()
    assert sleeps == [0.5, 0.5]
    assert rows[0]["transaction_id"] == "txn-create" and "@ptr" not in rows[0]
    assert [row.get("step") for row in rows] == [None, "open", None, "contact", "send", "close"]


def test_run_query_times_out_and_stops_the_query(logs: Any) -> None:
    stubber = Stubber(logs)
    stubber.add_response("start_query", {"queryId": "q-9"}, {"logGroupName": ANY, "startTime": ANY,
                         "endTime": ANY, "queryString": ANY, "limit": ANY})  # fmt: skip
    clock = iter([0.0, 1.0, 2.0])  # deadline 2.0: polled at 1.0 (sleep) and 2.0 (stop)
    for _ in range(2):
        stubber.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-9"})
    stubber.add_response("stop_query", {"success": True}, {"queryId": "q-9"})
    with stubber, pytest.raises(TraceError, match="did not finish within 2 s"):
        run_query(logs, LOG_GROUP, "q", 0, 1, timeout_s=2, sleep=lambda _: None, monotonic=lambda: next(clock))
    stubber.assert_no_pending_responses()


@pytest.mark.parametrize("status", ["Failed", "Cancelled", "Timeout"])
def test_run_query_reports_a_query_that_did_not_complete(logs: Any, status: str) -> None:
    stubber = Stubber(logs)
    stubber.add_response("start_query", {"queryId": "q-2"})
    stubber.add_response("get_query_results", {"status": status, "results": []})
    with stubber, pytest.raises(TraceError, match=f"ended {status}"):
        run_query(logs, LOG_GROUP, "q", 0, 1, sleep=lambda _: None)


def test_run_query_reports_an_unknown_log_group(logs: Any) -> None:
    stubber = Stubber(logs)
    stubber.add_client_error("start_query", "ResourceNotFoundException", "Log group does not exist")
    with stubber, pytest.raises(TraceError, match="ResourceNotFoundException: Log group does not exist"):
        run_query(logs, LOG_GROUP, "q", 0, 1)


# -- stack resolution -------------------------------------------------------------------------------------------


def test_resolve_stack_reads_the_outputs() -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    stubber = Stubber(cloudformation)
    outputs = [
        {"OutputKey": "BridgeLogGroupName", "OutputValue": LOG_GROUP},
        {"OutputKey": "ContactTableName", "OutputValue": "vb-ContactTable-1"},
        {"OutputKey": "ParkingQueueUrl", "OutputValue": "https://sqs/parking"},
    ]
    stack = {"StackName": "vb", "CreationTime": "2027-01-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE"}
    stubber.add_response("describe_stacks", {"Stacks": [{**stack, "Outputs": outputs}]}, {"StackName": "vb"})
    with stubber:
        assert resolve_stack(cloudformation, "vb") == Targets(LOG_GROUP, "vb-ContactTable-1", "https://sqs/parking")


def test_resolve_stack_falls_back_to_resources_and_reports_an_unknown_stack() -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    stubber = Stubber(cloudformation)
    stack = {"StackName": "old", "CreationTime": "2027-01-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE"}
    stubber.add_response("describe_stacks", {"Stacks": [stack]})
    resources = [
        {"LogicalResourceId": logical, "PhysicalResourceId": physical, "ResourceType": kind,
         "Timestamp": "2027-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}
        for logical, physical, kind in [
            ("BridgeLogGroup", LOG_GROUP, "AWS::Logs::LogGroup"),
            ("ContactTable", "old-ContactTable-X", "AWS::DynamoDB::Table"),
            ("ParkingQueue", "https://sqs/old-parking", "AWS::SQS::Queue"),
        ]
    ]  # fmt: skip
    stubber.add_response("describe_stack_resources", {"StackResources": resources}, {"StackName": "old"})
    stubber.add_client_error("describe_stacks", "ValidationError", "Stack with id nope does not exist")
    with stubber:
        assert resolve_stack(cloudformation, "old") == Targets(
            LOG_GROUP, "old-ContactTable-X", "https://sqs/old-parking"
        )
        with pytest.raises(TraceError, match="nope does not exist"):
            resolve_stack(cloudformation, "nope")


# -- DynamoDB and the parking queue (moto) ----------------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_peek_finds_the_contacts_parked_items_and_deletes_nothing() -> None:
    sqs, url = _queue_with(
        [
            _parked(CONTACT, "servicenow_rejected", "200"),
            _parked(OTHER, "after_close", "900"),
            _parked(None, "invalid_json", "901"),
            _parked(CONTACT, "after_close", "300"),
        ]
        + [_parked(OTHER, "after_close", str(1000 + i)) for i in range(14)]
    )
    bodies = peek_parked(sqs, url, CONTACT, visibility_timeout=30, wait_seconds=0)
    assert sorted(body["reason_class"] for body in bodies) == ["after_close", "servicenow_rejected"]
    assert {body["contact_id"] for body in bodies} == {CONTACT}
    # Everything is still there, and visible again right away.
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "18"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


@pytest.mark.usefixtures("aws")
def test_trace_prints_timeline_state_and_parked_items(logs: Any) -> None:
    state = ContactState(
        contact_id=CONTACT,
        status=ContactStatus.OPEN,
        version=4,
        instance_id="inst",
        interaction_id="i-1",
        conversation_id="conv-1",
        sent=SentSet().with_ids(["t1", "t2", "t3"]),
        pending=(PendingEntry("t3", "200"),),
        created_at=1_800_000_000,
        updated_at=1_800_000_009,
        expires_at=1_800_604_809,
    )
    dynamodb = _table_with(state)
    sqs, url = _queue_with([_parked(CONTACT, "servicenow_rejected", "200"), _parked(OTHER, "after_close", "9")])
    stubber = Stubber(logs)
    _stub_query(stubber, ROWS)
    with stubber:
        output = trace(
            CONTACT,
            Targets(LOG_GROUP, TABLE, url),
            Clients(logs, dynamodb, sqs),
            TraceOptions(poll_s=0, peek_wait_s=0),
            now=lambda: NOW,
            sleep=lambda _: None,
        )
    print(output)
    timeline, rest = output.split("DynamoDB state")
    assert "6 log line(s)" in timeline
    assert "POST create_interaction 200" in timeline and "txn-create" in timeline and "41.5 ms" in timeline
    assert "http 503" in timeline and "txn-503" in timeline and "1,200 ms" in timeline
    assert "retry" in timeline and "[ServiceNowUnavailableError]" in timeline
    assert "850 ms" in timeline and "65 s" in timeline  # lag
    body = [line.split() for line in timeline.splitlines()[4:] if line.strip()]
    assert [cells[2] for cells in body] == ["servicenow", "open", "servicenow", "contact", "send", "close"]
    item, parked = rest.split("Parked items")
    for expected in (
        r"status +open",
        r"interaction id +i-1",
        r"sent +3 segments",
        r"pending +1 \(unconfirmed: t3@200\)",
        r"updated +2027-01-15 08:00:09 UTC",
    ):
        assert re.search(expected, item), expected
    assert "servicenow_rejected" in parked and "ServiceNowRejectedError status 400 txn txn-400" in parked
    assert "after_close" not in parked and "c2VjcmV0" not in output  # other contacts; no payload


@pytest.mark.usefixtures("aws")
def test_trace_says_what_is_missing(logs: Any) -> None:
    dynamodb = _table_with(None)
    sqs, url = _queue_with([])
    stubber = Stubber(logs)
    _stub_query(stubber, [], statuses=())
    with stubber:
        output = trace(
            CONTACT, Targets(LOG_GROUP, TABLE, url), Clients(logs, dynamodb, sqs), TraceOptions(peek_wait_s=0),
            now=lambda: NOW,
        )  # fmt: skip
    assert "0 log line(s)" in output and "(no log lines)" in output
    assert "no item" in output and "(none)" in output


def test_format_timeline_of_nothing() -> None:
    assert format_timeline([]) == "  (no log lines)"


# -- the command line ---------------------------------------------------------------------------------------------


def _args(*argv: str) -> Any:
    return build_parser(["trace", *argv]).parse_args(["trace", *argv])


def test_cli_needs_a_log_group_or_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_args(CONTACT)) == 2
    assert "--log-group NAME or --stack NAME" in capsys.readouterr().err


def test_cli_resolves_the_stack_and_prints_the_report(logs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cfn = Stubber(cloudformation)
    stack = {"StackName": "vb", "CreationTime": "2027-01-01T00:00:00Z", "StackStatus": "CREATE_COMPLETE"}
    outputs = [{"OutputKey": "BridgeLogGroupName", "OutputValue": LOG_GROUP}]
    cfn.add_response("describe_stacks", {"Stacks": [{**stack, "Outputs": outputs}]})
    cfn.add_response("describe_stack_resources", {"StackResources": []})
    stubber = Stubber(logs)
    stubber.add_response("start_query", {"queryId": "q-1"}, {"logGroupName": LOG_GROUP, "startTime": ANY,
                         "endTime": ANY, "queryString": timeline_query(CONTACT), "limit": 10000})  # fmt: skip
    stubber.add_response("get_query_results", {"status": "Complete", "results": ROWS[:2]})
    with cfn, stubber:
        code = run(_args(CONTACT, "--stack", "vb", "--since", "2h"), Clients(logs, cloudformation=cloudformation))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 log line(s)" in out and "not read (pass --table or --stack)" in out


def test_cli_reports_a_failed_query(logs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    stubber = Stubber(logs)
    stubber.add_response("start_query", {"queryId": "q-1"})
    stubber.add_response("get_query_results", {"status": "Failed", "results": []})
    with stubber:
        assert run(_args(CONTACT, "--log-group", LOG_GROUP), Clients(logs)) == 1
    assert "ended Failed" in capsys.readouterr().err


def test_json_log_values_round_trip_through_the_formatter() -> None:
    # Logs Insights returns every value as a string; lists/dicts come back as JSON text and must not break a row.
    rows = [{"@timestamp": "t", "step": "open", "outcome": "opened", "lookup_fallbacks": json.dumps(["caller"])}]
    assert "open" in format_timeline(rows)
