"""``voicebridge trace CONTACT_ID``: one contact's story in one step.

1. Its timeline from CloudWatch Logs Insights: the "contact timeline" query (:data:`CONTACT_TIMELINE_QUERY`, the
   same text the template ships as an ``AWS::Logs::QueryDefinition``) over the bridge's log group: every line the
   bridge wrote for the contact (step, outcome, ServiceNow operation/status/X-Transaction-ID, latency, sequence
   number, lag).
2. Its DynamoDB item (status, interaction id, sent count, pending segments, close sequence number, updated).
3. Any parked items for it in the parking queue, found by the ``contact_id`` message attribute.

Peeking at the parking queue is not free of side effects: SQS has no "peek", so messages are received with a
short visibility timeout (hidden from other consumers, e.g. a concurrent ``voicebridge redrive``, for that many
seconds), then made visible again at once; their receive count goes up by one. Nothing is ever deleted.

The log group, table and queue come from ``--log-group/--table/--queue-url`` or from the stack's outputs
(``--stack``). Nothing printed here holds transcript content: the bridge never logs it, and parked payloads are
summarised by sequence number only.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from voicebridge import argtypes
from voicebridge.timeparse import parse_moment

# The one copy of the query (template.yaml's ContactTimelineQuery holds the same text; a test asserts it).
# CONTACT_ID is the placeholder an operator replaces in the console; `voicebridge trace` substitutes it.
CONTACT_ID_PLACEHOLDER = "CONTACT_ID"
CONTACT_TIMELINE_QUERY = (
    "fields @timestamp, level, message, step, outcome, operation, method, status, transaction_id, latency_ms, "
    "sequence_number, interaction_id, lag_ms, reason_class, error_class, function_request_id\n"
    '| filter contact_id = "CONTACT_ID"\n'
    "| sort @timestamp asc\n"
    "| limit 10000\n"
)
QUERY_LIMIT = 10_000
TERMINAL_STATUSES = frozenset({"Complete", "Failed", "Cancelled", "Timeout", "Unknown"})
CONTACT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}$")

# Stack outputs (template.yaml) and, as a fallback, the logical ids of the resources behind them.
STACK_OUTPUTS = {"log_group": "BridgeLogGroupName", "table": "ContactTableName", "queue_url": "ParkingQueueUrl"}
STACK_RESOURCES = {"log_group": "BridgeLogGroup", "table": "ContactTable", "queue_url": "ParkingQueue"}


class TraceError(RuntimeError):
    """Something the operator must fix (unknown stack, failed query...): printed without a traceback."""


@dataclass
class Targets:
    log_group: str | None = None
    table: str | None = None
    queue_url: str | None = None


@dataclass
class Clients:
    """The AWS clients trace uses (tests pass stubbed or moto-backed ones)."""

    logs: Any
    dynamodb: Any = None
    sqs: Any = None
    cloudformation: Any = None

    @classmethod
    def from_environment(cls) -> Clients:
        import boto3

        return cls(
            logs=boto3.client("logs"),
            dynamodb=boto3.client("dynamodb"),
            sqs=boto3.client("sqs"),
            cloudformation=boto3.client("cloudformation"),
        )


# -- inputs ---------------------------------------------------------------------------------------------------


def timeline_query(contact_id: str) -> str:
    """The contact timeline query for one contact (the id is validated: it is pasted into a query string)."""
    if not CONTACT_ID_PATTERN.match(contact_id):
        raise TraceError(f"not a contact id: {contact_id[:80]!r} (letters, digits, '-', '_', '.', ':' only)")
    return CONTACT_TIMELINE_QUERY.replace(f'"{CONTACT_ID_PLACEHOLDER}"', json.dumps(contact_id))


def parse_since(text: str, now: float) -> float:
    """``--since``: a duration back from now (``90s``, ``30m``, ``24h``, ``7d``, ``2w``), an ISO 8601 time
    (naive means UTC) or epoch seconds. Returns epoch seconds."""
    try:
        return parse_moment(text, now)
    except ValueError:
        raise TraceError(f"--since {text!r}: expected a duration (24h, 30m, 7d), an ISO 8601 time or epoch") from None


def resolve_stack(cloudformation: Any, stack: str) -> Targets:
    """The log group, contact table and parking queue of a deployed stack (outputs first, then resources)."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        raise TraceError(f"stack {stack!r}: {exc.response.get('Error', {}).get('Message', exc)}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for s in stacks for o in s.get("Outputs", [])}
    found = {key: outputs.get(name) for key, name in STACK_OUTPUTS.items()}
    if not all(found.values()):
        resources = cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources}
        for key, logical in STACK_RESOURCES.items():
            found[key] = found[key] or physical.get(logical)
    if not found["log_group"]:
        raise TraceError(f"stack {stack!r} has no {STACK_OUTPUTS['log_group']} output nor a BridgeLogGroup resource")
    return Targets(found["log_group"], found["table"], found["queue_url"])


# -- the three sources ----------------------------------------------------------------------------------------


def run_query(
    logs: Any,
    log_group: str,
    query: str,
    start: float,
    end: float,
    timeout_s: float = 60.0,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> list[dict[str, str]]:
    """StartQuery, then GetQueryResults until the query ends; rows as ``{field: value}`` (``@ptr`` dropped).

    Past ``timeout_s`` the query is stopped and :class:`TraceError` raised."""
    from botocore.exceptions import ClientError

    try:
        query_id = logs.start_query(
            logGroupName=log_group, startTime=int(start), endTime=int(end) + 1, queryString=query, limit=QUERY_LIMIT
        )["queryId"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise TraceError(f"StartQuery on {log_group}: {error.get('Code')}: {error.get('Message')}") from None
    deadline = monotonic() + timeout_s
    while True:
        response = logs.get_query_results(queryId=query_id)
        status = response.get("status", "Unknown")
        if status in TERMINAL_STATUSES:
            break
        if monotonic() >= deadline:
            try:
                logs.stop_query(queryId=query_id)
            except ClientError:
                pass  # it may have finished in between
            raise TraceError(f"the Logs Insights query did not finish within {timeout_s:.0f} s (--query-timeout)")
        sleep(poll_s)
    if status != "Complete":
        raise TraceError(f"the Logs Insights query ended {status}")
    return [
        {cell["field"]: cell.get("value", "") for cell in row if cell.get("field") != "@ptr"}
        for row in response.get("results", [])
    ]


def contact_item(dynamodb: Any, table: str, contact_id: str) -> dict[str, Any] | None:
    """The contact's state item (low-level attribute values) or None."""
    response = dynamodb.get_item(TableName=table, Key={"contact_id": {"S": contact_id}}, ConsistentRead=True)
    item: dict[str, Any] | None = response.get("Item")
    return item


def peek_parked(
    sqs: Any,
    queue_url: str,
    contact_id: str,
    visibility_timeout: int = 30,
    wait_seconds: int = 1,
    max_messages: int = 1000,
) -> list[dict[str, Any]]:
    """Parked items for ``contact_id``, WITHOUT deleting anything.

    Side effect: every message received is hidden for up to ``visibility_timeout`` seconds (so the scan makes
    progress instead of seeing the same ten messages again), then made visible again at the end; each message's
    ApproximateReceiveCount goes up by one. Returns the message bodies (parsed) of the contact's items, oldest
    parking time first.
    """
    seen: dict[str, str] = {}  # message id -> receipt handle
    mine: list[dict[str, Any]] = []
    try:
        while len(seen) < max_messages:
            messages = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=visibility_timeout,
                WaitTimeSeconds=wait_seconds,
                MessageAttributeNames=["contact_id", "reason_class"],
            ).get("Messages", [])
            new = [m for m in messages if m["MessageId"] not in seen]
            if not new:
                break
            for message in new:
                seen[message["MessageId"]] = message["ReceiptHandle"]
                attribute = message.get("MessageAttributes", {}).get("contact_id", {})
                if attribute.get("StringValue") != contact_id:
                    continue
                try:
                    body = json.loads(message["Body"])
                except ValueError:
                    body = {"reason": "(body is not JSON)"}
                mine.append(body if isinstance(body, dict) else {"reason": "(body is not an object)"})
    finally:
        _make_visible(sqs, queue_url, list(seen.values()))
    return sorted(mine, key=lambda body: (float(body.get("parked_at") or 0), int(body.get("part") or 0)))


def _make_visible(sqs: Any, queue_url: str, receipts: Sequence[str]) -> None:
    for start in range(0, len(receipts), 10):
        entries = [
            {"Id": str(index), "ReceiptHandle": receipt, "VisibilityTimeout": 0}
            for index, receipt in enumerate(receipts[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


# -- formatting -----------------------------------------------------------------------------------------------

TIMELINE_COLUMNS = ("time (UTC)", "step", "outcome", "servicenow", "latency", "transaction id", "lag", "event", "seq")


def timeline_rows(rows: Sequence[dict[str, str]]) -> list[tuple[str, ...]]:
    """One display row per log line. ServiceNow call lines (which carry operation/status rather than a step)
    show as step ``servicenow`` with an ``ok``/``http NNN``/``failed`` outcome."""
    table: list[tuple[str, ...]] = []
    for row in rows:
        operation = row.get("operation", "")
        status = row.get("status", "")
        step = row.get("step") or ("servicenow" if operation else "-")
        outcome = row.get("outcome") or _status_outcome(status, operation)
        servicenow = " ".join(part for part in (row.get("method", ""), operation, status) if part) or "-"
        latency = f"{_number(row.get('latency_ms'))} ms" if row.get("latency_ms") else "-"
        lag = _lag(row.get("lag_ms"))
        event = row.get("message", "")
        for extra in ("reason_class", "error_class"):
            if row.get(extra):
                event = f"{event} [{row[extra]}]"
        table.append(
            (
                row.get("@timestamp", "-"),
                step,
                outcome,
                servicenow,
                latency,
                row.get("transaction_id") or "-",
                lag,
                event or "-",
                row.get("sequence_number") or "-",
            )
        )
    return table


def _status_outcome(status: str, operation: str) -> str:
    if not operation:
        return "-"
    if not status:
        return "failed"
    return "ok" if status.startswith("2") else f"http {status}"


def _number(text: str | None) -> str:
    try:
        value = float(text or "")
    except ValueError:
        return text or "-"
    return f"{value:g}" if value < 1000 else f"{value:,.0f}"


def _lag(text: str | None) -> str:
    if not text:
        return "-"
    try:
        millis = float(text)
    except ValueError:
        return text
    if millis < 10_000:
        return f"{millis:.0f} ms"
    if millis < 3_600_000:
        return f"{millis / 1000:.0f} s"
    return f"{millis / 3_600_000:.1f} h"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = []
    for cells in (header, *rows):
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=False)).rstrip())
    return "\n".join(lines)


def format_timeline(rows: Sequence[dict[str, str]]) -> str:
    if not rows:
        return "  (no log lines)"
    return "\n".join("  " + line for line in render_table(TIMELINE_COLUMNS, timeline_rows(rows)).splitlines())


def _epoch(value: dict[str, Any] | None) -> str:
    if not value or "N" not in value:
        return "-"
    seconds = int(value["N"])
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S} UTC"


def format_item(item: dict[str, Any] | None) -> str:
    if item is None:
        return (
            "  (no item: the bridge has no state for this contact. Either no record of it reached the bridge\n"
            "   - check the timeline and the parked items - or its TTL expired)"
        )

    def text(name: str) -> str:
        value = item.get(name)
        return str(value.get("S") or value.get("N") or "-") if isinstance(value, dict) else "-"

    pending = [entry.get("M", {}) for entry in item.get("pending", {}).get("L", [])]
    pending_text = str(len(pending))
    if pending:
        shown = ", ".join(f"{p.get('id', {}).get('S', '?')}@{p.get('seq', {}).get('S', '?')}" for p in pending[:5])
        pending_text += f" (unconfirmed: {shown}{', ...' if len(pending) > 5 else ''})"
    fields = [
        ("status", text("status")),
        ("interaction id", text("interaction_id")),
        ("conversation id", text("conversation_id")),
        ("sent", f"{text('sent_count')} segments"),
        ("pending", pending_text),
        ("close seq", text("close_seq")),
        ("max offset", f"{text('max_offset')} ms"),
        ("version", text("version")),
        ("created", _epoch(item.get("created_at"))),
        ("updated", _epoch(item.get("updated_at"))),
        ("expires", _epoch(item.get("expires_at"))),
    ]
    return "\n".join(f"  {name:<17}{value}" for name, value in fields)


def format_parked(bodies: Sequence[dict[str, Any]]) -> str:
    if not bodies:
        return "  (none)"
    header = ("parked at (UTC)", "reason class", "part", "records", "sequence numbers", "error", "reason")
    rows = []
    for body in bodies:
        records = [r for r in body.get("records") or [] if isinstance(r, dict)]
        sequences = [str(r.get("sequenceNumber", "?")) for r in records]
        span = "-" if not sequences else sequences[0] if len(sequences) == 1 else f"{sequences[0]} .. {sequences[-1]}"
        error = body.get("error") or {}
        error_text = (
            " ".join(
                str(part)
                for part in (
                    error.get("error_class"),
                    error.get("operation"),
                    f"status {error['status']}" if error.get("status") else None,
                    f"txn {error['transaction_id']}" if error.get("transaction_id") else None,
                )
                if part
            )
            or "-"
        )
        parked_at = body.get("parked_at")
        when = f"{datetime.fromtimestamp(float(parked_at), UTC):%Y-%m-%d %H:%M:%S}" if parked_at else "-"
        rows.append(
            (
                when,
                str(body.get("reason_class", "-")),
                f"{body.get('part', 1)}/{body.get('parts', 1)}",
                str(len(records)),
                span,
                error_text,
                " ".join(str(body.get("reason", "-")).split())[:120],
            )
        )
    return "\n".join("  " + line for line in render_table(header, rows).splitlines())


# -- the command ----------------------------------------------------------------------------------------------


@dataclass
class TraceOptions:
    since: str = "24h"
    until: str | None = None
    query_timeout_s: float = 60.0
    poll_s: float = 1.0
    peek_visibility_s: int = 30
    peek_wait_s: int = 1


def trace(
    contact_id: str,
    targets: Targets,
    clients: Clients,
    options: TraceOptions | None = None,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The whole report for one contact, as printed by ``voicebridge trace``."""
    options = options or TraceOptions()
    query = timeline_query(contact_id)
    end_time = now() if options.until is None else parse_since(options.until, now())
    start_time = parse_since(options.since, now())
    if not targets.log_group:
        raise TraceError("no log group: pass --log-group NAME or --stack NAME")
    rows = run_query(
        clients.logs,
        targets.log_group,
        query,
        start_time,
        end_time,
        timeout_s=options.query_timeout_s,
        poll_s=options.poll_s,
        sleep=sleep,
    )
    window = (
        f"{datetime.fromtimestamp(start_time, UTC):%Y-%m-%d %H:%M} .. "
        f"{datetime.fromtimestamp(end_time, UTC):%Y-%m-%d %H:%M} UTC"
    )
    sections = [
        f"contact {contact_id}",
        "",
        f"Timeline: {len(rows)} log line(s) in {targets.log_group}, {window}",
        format_timeline(rows),
    ]
    if rows and len(rows) >= QUERY_LIMIT:
        sections.append(f"  (truncated at {QUERY_LIMIT} lines: narrow --since/--until)")
    sections.append("")
    if targets.table and clients.dynamodb is not None:
        sections += [
            f"DynamoDB state ({targets.table}):",
            format_item(contact_item(clients.dynamodb, targets.table, contact_id)),
        ]
    else:
        sections.append("DynamoDB state: not read (pass --table or --stack)")
    sections.append("")
    if targets.queue_url and clients.sqs is not None:
        bodies = peek_parked(
            clients.sqs,
            targets.queue_url,
            contact_id,
            visibility_timeout=options.peek_visibility_s,
            wait_seconds=options.peek_wait_s,
        )
        sections += [f"Parked items ({targets.queue_url}; peeked, nothing deleted):", format_parked(bodies)]
    else:
        sections.append("Parked items: not read (pass --queue-url or --stack)")
    return "\n".join(sections)


def _contact_id(text: str) -> str:
    if not CONTACT_ID_PATTERN.match(text):
        raise argparse.ArgumentTypeError(
            f"expected an Amazon Connect contact id (letters, digits, '-', '_', '.', ':'), got {text[:80]!r}"
        )
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("contact_id", type=_contact_id, metavar="CONTACT_ID", help="the Amazon Connect contact id")
    parser.add_argument(
        "--since",
        type=argtypes.moment,
        default="24h",
        help="start of the window: 30m, 24h, 7d, ISO 8601 or epoch (24h)",
    )
    parser.add_argument("--until", type=argtypes.moment, help="end of the window (default: now), same forms as --since")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--log-group", help="the bridge's log group name")
    where.add_argument("--stack", help="read the log group, table and parking queue from this stack's outputs")
    parser.add_argument("--table", help="the contact table (default: from --stack)")
    parser.add_argument("--queue-url", help="the parking queue URL (default: from --stack)")
    parser.add_argument(
        "--query-timeout",
        type=argtypes.positive_float,
        default=60.0,
        help="seconds to wait for Logs Insights (60)",
    )
    parser.add_argument(
        "--peek-visibility",
        type=argtypes.bounded_int(1, 43_200),  # SQS visibility timeouts go up to 12 hours
        default=30,
        help="seconds parked messages may stay hidden while the queue is scanned (30); restored right after",
    )


def run(args: argparse.Namespace, clients: Clients | None = None) -> int:
    if not args.log_group and not args.stack:
        print("voicebridge trace: pass --log-group NAME or --stack NAME", file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        clients = clients or Clients.from_environment()
        targets = Targets(args.log_group, args.table, args.queue_url)
        if args.stack:
            found = resolve_stack(clients.cloudformation, args.stack)
            targets = Targets(found.log_group, args.table or found.table, args.queue_url or found.queue_url)
        options = TraceOptions(
            since=args.since,
            until=args.until,
            query_timeout_s=args.query_timeout,
            peek_visibility_s=args.peek_visibility,
        )
        print(trace(args.contact_id, targets, clients, options))
    except TraceError as exc:
        print(f"voicebridge trace: {exc}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:  # no credentials or region, endpoint unreachable: the AWS set-up
        print(f"voicebridge trace: AWS: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"voicebridge trace: AWS error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="voicebridge trace")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
