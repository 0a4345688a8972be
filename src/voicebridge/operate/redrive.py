"""``voicebridge redrive``: re-feed parked items through the real handler after a fix, and report what it did.

Reads the parking queue (``--queue-url``, default ``PARKING_QUEUE_URL``), keeps the messages matching ``--reason``
and ``--contact``, rebuilds the Lambda Kinesis records exactly as parked (sequence numbers and base64 ``data``
untouched), and invokes ``bridge.handler.lambda_handler`` per contact, in sequence order, in batches, with the
Kinesis event source mapping's redelivery semantics (``voicebridge.feed.shard.ShardDriver``).

A message is deleted only once every one of its records went through without being reported in
``batchItemFailures``. Records the handler parks again (still after close, still malformed, rejected again) are
new parked messages and the old message is deleted: parking *moves* them, and the report counts them as
``reparked`` by reason. Messages with records that still fail stay in the queue (made visible again at once).
Redriving twice is harmless: the bridge skips segments it already handed to ServiceNow.

When the queue counts as read to the end: SQS short polls sample a subset of its servers and may answer empty while
messages wait, so every receive is a long poll (``WaitTimeSeconds`` = ``--wait-seconds``, default 2), and reading
stops only at an empty long poll after which ``ApproximateNumberOfMessages`` is 0. While the count still says
otherwise (it lags a little), reading goes on, up to :data:`MAX_EMPTY_POLLS` empty long polls in a row; the report
then says how many messages the queue still counted. ``--max-messages`` bounds one run in any case.

Where the handler's configuration comes from:
- default: the environment, exactly as the deployed function reads it (``SERVICENOW_URL``,
  ``SERVICENOW_SECRET_ARN``, ``CONTACT_TABLE``, ``PARKING_QUEUE_URL`` and the optional variables of README
  "Configuration"), with the standard AWS configuration (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``...);
- ``--servicenow-url`` with ``--user/--password`` (or ``--client-id/--client-secret``) and ``--table``: like
  ``voicebridge replay``, it creates what is missing (secret ``voicebridge/replay/servicenow``, the replay parking
  queue) and sets the environment itself; Connect lookups are then off.

Nothing here prints or logs transcript content: only ids, reason classes and counts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicebridge import argtypes
from voicebridge.feed.fixtures import StreamRecord
from voicebridge.feed.replay import ReplayContext, bridge_log_level, tool_environment
from voicebridge.feed.shard import ShardDriver

NO_CONTACT = "-"  # records parked without a contact id (undecodable, invalid JSON...)
RECEIVE_VISIBILITY_S = 900  # how long a message read by this run stays hidden from other consumers
MAX_MESSAGES_DEFAULT = 10_000
DEFAULT_WAIT_S = 2  # a long poll of any length asks every SQS server; this is how long an empty queue costs
MAX_EMPTY_POLLS = 5


@dataclass
class RedriveOptions:
    queue_url: str
    reasons: frozenset[str] = frozenset()
    contacts: frozenset[str] = frozenset()
    dry_run: bool = False
    max_messages: int = MAX_MESSAGES_DEFAULT
    batch_size: int = 100
    max_retries: int = 3
    log_level: str = "WARNING"
    wait_seconds: int = DEFAULT_WAIT_S


@dataclass
class ParkedMessage:
    receipt_handle: str
    reason_class: str
    contact_id: str
    records: list[dict[str, Any]]

    def stream_records(self) -> list[StreamRecord]:
        return [to_stream_record(record) for record in self.records]


@dataclass
class ContactReport:
    contact_id: str
    messages: int = 0
    records: int = 0
    succeeded: int = 0
    reparked: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass
class RedriveReport:
    dry_run: bool
    messages_read: int = 0  # matching messages (the others were released untouched)
    messages_skipped: int = 0  # read but not matching --reason/--contact, or unreadable
    messages_deleted: int = 0
    records: int = 0
    succeeded: int = 0
    reparked: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)  # matching messages' records by parked reason
    contacts: dict[str, ContactReport] = field(default_factory=dict)
    # Visible messages the queue still counted when reading stopped (0: read to the end).
    left_in_queue: int = 0
    empty_polls: int = 0

    @property
    def reparked_total(self) -> int:
        return sum(self.reparked.values())


def to_stream_record(parked: dict[str, Any]) -> StreamRecord:
    """A parked record back as a stream record; ``data`` is kept verbatim (it may be poison that is not base64)."""
    try:
        arrival = float(parked.get("approximateArrivalTimestamp") or 0.0)
    except (TypeError, ValueError):
        arrival = 0.0
    return StreamRecord(
        data=b"",
        partition_key=str(parked.get("partitionKey", "")),
        sequence_number=str(parked.get("sequenceNumber", "")),
        arrival_timestamp=arrival,
        raw_data_b64=str(parked.get("data", "")),
    )


def _sequence_key(record: StreamRecord) -> tuple[int, str]:
    return _number_key(record.sequence_number)


def _number_key(sequence_number: str) -> tuple[int, str]:
    """Kinesis sequence numbers compare as integers; a malformed one sorts first, as the handler does."""
    try:
        return (int(sequence_number), sequence_number)
    except ValueError:
        return (-1, sequence_number)


def parse_message(message: dict[str, Any]) -> ParkedMessage | None:
    """A parking-queue message, or None when it is not one (it is then left alone)."""
    try:
        body = json.loads(message["Body"])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        return None
    records = [r for r in body["records"] if isinstance(r, dict) and "sequenceNumber" in r]
    if not records:
        return None
    return ParkedMessage(
        receipt_handle=message["ReceiptHandle"],
        reason_class=str(body.get("reason_class") or "unknown"),
        contact_id=str(body.get("contact_id") or NO_CONTACT),
        records=records,
    )


@dataclass
class Drained:
    messages: list[dict[str, Any]]
    left_in_queue: int  # ApproximateNumberOfMessages when reading stopped (0 unless the limit or patience ran out)
    empty_polls: int


def drain(
    sqs: Any,
    queue_url: str,
    limit: int,
    wait_seconds: int = DEFAULT_WAIT_S,
    max_empty_polls: int = MAX_EMPTY_POLLS,
) -> Drained:
    """Every message up to ``limit``, read until the queue is really empty (see the module docstring); each stays
    invisible to other consumers while this run holds it."""
    messages: list[dict[str, Any]] = []
    empty_polls = 0
    while len(messages) < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - len(messages)),
            VisibilityTimeout=RECEIVE_VISIBILITY_S,
            WaitTimeSeconds=wait_seconds,
        ).get("Messages", [])
        if batch:
            messages.extend(batch)
            empty_polls = 0
            continue
        empty_polls += 1
        visible = visible_messages(sqs, queue_url)
        if visible == 0 or empty_polls >= max_empty_polls:
            return Drained(messages, visible, empty_polls)
    return Drained(messages, visible_messages(sqs, queue_url), empty_polls)


def visible_messages(sqs: Any, queue_url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))


def receive_all(sqs: Any, queue_url: str, limit: int, wait_seconds: int = DEFAULT_WAIT_S) -> list[dict[str, Any]]:
    """Every message up to ``limit`` (:func:`drain` without its counts)."""
    return drain(sqs, queue_url, limit, wait_seconds).messages


def _release(sqs: Any, queue_url: str, receipt_handles: Sequence[str]) -> None:
    """Make messages visible again now (not redriven, or failed): the next run or consumer sees them at once."""
    for start in range(0, len(receipt_handles), 10):
        entries = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for index, handle in enumerate(receipt_handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def _delete(sqs: Any, queue_url: str, receipt_handles: Sequence[str]) -> int:
    deleted = 0
    for start in range(0, len(receipt_handles), 10):
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles[start : start + 10])]
        response = sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        deleted += len(response.get("Successful", []))
    return deleted


def redrive(options: RedriveOptions) -> RedriveReport:
    """Redrive with the handler configured by the current environment (see the module docstring)."""
    import boto3

    sqs = boto3.client("sqs")
    report = RedriveReport(dry_run=options.dry_run)
    drained = drain(sqs, options.queue_url, options.max_messages, options.wait_seconds)
    raw = drained.messages
    report.left_in_queue = drained.left_in_queue
    report.empty_polls = drained.empty_polls
    chosen: list[ParkedMessage] = []
    release: list[str] = []
    for message in raw:
        parked = parse_message(message)
        if (
            parked is None
            or (options.reasons and parked.reason_class not in options.reasons)
            or (options.contacts and parked.contact_id not in options.contacts)
        ):
            release.append(message["ReceiptHandle"])
            continue
        chosen.append(parked)
    report.messages_skipped = len(release)
    report.messages_read = len(chosen)
    for parked in chosen:
        contact = report.contacts.setdefault(parked.contact_id, ContactReport(parked.contact_id))
        contact.messages += 1
        contact.records += len(parked.records)
        contact.reasons[parked.reason_class] += len(parked.records)
        report.by_reason[parked.reason_class] += len(parked.records)
    if options.dry_run:
        report.records = sum(c.records for c in report.contacts.values())
        _release(sqs, options.queue_url, release + [p.receipt_handle for p in chosen])
        return report
    try:
        with bridge_log_level(options.log_level):
            failed, reparked = _invoke(chosen, options)
    except BaseException:
        _release(sqs, options.queue_url, release + [p.receipt_handle for p in chosen])
        raise
    _account(report, chosen, failed, reparked)
    done = [p.receipt_handle for p in chosen if not any(r["sequenceNumber"] in failed for r in p.records)]
    report.messages_deleted = _delete(sqs, options.queue_url, done)
    _release(sqs, options.queue_url, release + [p.receipt_handle for p in chosen if p.receipt_handle not in done])
    return report


def _invoke(chosen: Sequence[ParkedMessage], options: RedriveOptions) -> tuple[set[str], dict[str, str]]:
    """Run each contact's records through the handler; return the failed sequence numbers and reparked ones."""
    from bridge import factory
    from bridge.handler import lambda_handler
    from bridge.processor import BatchResult

    groups: dict[str, dict[str, StreamRecord]] = {}
    for parked in chosen:
        group = groups.setdefault(parked.contact_id, {})
        for record in parked.stream_records():
            # The same record can sit in two messages (malformed_segment, then its contact rejected): feed it once.
            group.setdefault(record.sequence_number, record)
    failed: set[str] = set()
    reparked: dict[str, str] = {}

    def observe(result: BatchResult) -> None:
        for item in result.parked:
            for record in item.records:
                reparked[str(record.get("sequenceNumber", ""))] = item.reason_class
        for item in result.parking_failed:
            failed.update(str(record.get("sequenceNumber", "")) for record in item.records)

    factory.reset()
    bridge = factory.get_bridge()
    # A redrive *moves* what fails again into a new parked message before deleting the old one: park every time.
    bridge.processor.park_once = False
    bridge.processor.observers.append(observe)
    try:
        for records in groups.values():
            ordered = sorted(records.values(), key=_sequence_key)
            driver = ShardDriver(
                ordered,
                lambda event: lambda_handler(event, ReplayContext()),
                batch_size=options.batch_size,
                max_retries=options.max_retries,
            )
            delivery = driver.run()
            for first, last in delivery.given_up:
                low, high = _number_key(first), _number_key(last)
                failed.update(r.sequence_number for r in ordered if low <= _sequence_key(r) <= high)
    finally:
        bridge.processor.observers.remove(observe)
        factory.reset()
    return failed, reparked


def _account(
    report: RedriveReport, chosen: Sequence[ParkedMessage], failed: set[str], reparked: dict[str, str]
) -> None:
    seen: set[tuple[str, str]] = set()
    for parked in chosen:
        contact = report.contacts[parked.contact_id]
        for record in parked.records:
            key = (parked.contact_id, str(record["sequenceNumber"]))
            if key in seen:
                continue
            seen.add(key)
            sequence = key[1]
            report.records += 1
            if sequence in failed:
                contact.failed += 1
                report.failed += 1
            elif sequence in reparked:
                contact.reparked += 1
                report.reparked[reparked[sequence]] += 1
            else:
                contact.succeeded += 1
                report.succeeded += 1


def format_report(report: RedriveReport) -> str:
    if report.dry_run:
        lines = [f"dry run: {report.messages_read} messages, {report.records} records would be redriven"]
        for reason, count in sorted(report.by_reason.items()):
            lines.append(f"  reason {reason:<24} {count:>6} records")
        lines.append(f"{'contact':<40} {'messages':>8} {'records':>8}  reasons")
        for contact in report.contacts.values():
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(contact.reasons.items()))
            lines.append(f"{contact.contact_id[:40]:<40} {contact.messages:>8} {contact.records:>8}  {reasons}")
        return "\n".join(lines + _unread(report))
    lines = [f"{'contact':<40} {'messages':>8} {'records':>8} {'ok':>6} {'reparked':>8} {'failed':>6}"]
    for c in report.contacts.values():
        lines.append(
            f"{c.contact_id[:40]:<40} {c.messages:>8} {c.records:>8} {c.succeeded:>6} {c.reparked:>8} {c.failed:>6}"
        )
    reparked = ", ".join(f"{k}={v}" for k, v in sorted(report.reparked.items())) or "none"
    lines.append(
        f"messages read {report.messages_read} (deleted {report.messages_deleted}, skipped {report.messages_skipped})"
        f" · records redriven {report.records} · succeeded {report.succeeded} · reparked {report.reparked_total}"
        f" ({reparked}; moved to new parked messages) · failed {report.failed} (left in the queue)"
    )
    return "\n".join(lines + _unread(report))


def _unread(report: RedriveReport) -> list[str]:
    if not report.left_in_queue:
        return []
    return [
        f"stopped with the queue still counting {report.left_in_queue} visible message(s) "
        f"({report.empty_polls} empty long polls in a row, or --max-messages reached): run redrive again"
    ]


@contextlib.contextmanager
def _handler_environment(args: argparse.Namespace) -> Iterator[str]:
    """The handler's environment; yields the queue to read. Never prints a secret."""
    with tool_environment(args, "voicebridge", "voicebridge-redrive") as environment:
        yield args.queue_url or environment.get("PARKING_QUEUE_URL", "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue-url", help="the parking queue (default: $PARKING_QUEUE_URL, or replay's queue)")
    parser.add_argument(
        "--reason", action="append", default=[], metavar="CLASS", help="only this reason class (repeatable)"
    )
    parser.add_argument("--contact", action="append", default=[], metavar="ID", help="only this contact (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be redriven; change nothing")
    parser.add_argument(
        "--max-messages",
        type=argtypes.positive_int,
        default=MAX_MESSAGES_DEFAULT,
        help=f"read at most N messages (default {MAX_MESSAGES_DEFAULT})",
    )
    parser.add_argument(
        "--wait-seconds",
        type=argtypes.bounded_int(1, 20),
        default=DEFAULT_WAIT_S,
        help=f"each receive's long poll, 1-20 s; an empty queue costs one of them (default {DEFAULT_WAIT_S})",
    )
    parser.add_argument(
        "--batch-size", type=argtypes.batch_size, default=100, help="records per invocation, 1-10000 (default 100)"
    )
    parser.add_argument(
        "--max-retries",
        type=argtypes.non_negative_int,
        default=3,
        help="redeliveries of one position before giving up (default 3)",
    )
    parser.add_argument(
        "--servicenow-url",
        type=argtypes.http_url,
        help="configure the handler like replay instead of from the environment",
    )
    parser.add_argument("--user", default=os.environ.get("SERVICENOW_USER", ""), help="basic auth user")
    parser.add_argument("--password", default=os.environ.get("SERVICENOW_PASSWORD", ""), help="basic auth password")
    parser.add_argument("--client-id", default="", help="OAuth client id (client credentials grant)")
    parser.add_argument("--client-secret", default=os.environ.get("SERVICENOW_CLIENT_SECRET", ""))
    parser.add_argument("--table", help="with --servicenow-url: the DynamoDB contact table (created if missing)")
    parser.add_argument(
        "--log-level",
        type=argtypes.log_level,
        default="WARNING",
        help="the handler's log level; its JSON lines go to stderr (default WARNING)",
    )


def run(args: argparse.Namespace) -> int:
    if args.servicenow_url:
        if not args.table:
            print("voicebridge redrive: --servicenow-url needs --table", file=sys.stderr)
            return 2
        if not (args.user and args.password) and not (args.client_id and args.client_secret):
            print(
                "voicebridge redrive: --servicenow-url needs --user/--password or --client-id/--client-secret",
                file=sys.stderr,
            )
            return 2
    from botocore.exceptions import BotoCoreError, ClientError

    from bridge.errors import ConfigurationError

    try:
        return _run(args)
    except ConfigurationError as exc:  # names the variable, never a value
        print(f"voicebridge redrive: the handler is not configured: {exc}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:  # no credentials or region, endpoint unreachable: the AWS set-up
        print(f"voicebridge redrive: AWS: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:  # AWS answered (no such queue, access denied...); unhandled messages stay queued
        print(f"voicebridge redrive: AWS error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    with _handler_environment(args) as queue_url:
        if not queue_url:
            print("voicebridge redrive: set --queue-url or PARKING_QUEUE_URL", file=sys.stderr)
            return 2
        options = RedriveOptions(
            queue_url=queue_url,
            reasons=frozenset(args.reason),
            contacts=frozenset(args.contact),
            dry_run=args.dry_run,
            max_messages=args.max_messages,
            batch_size=args.batch_size,
            max_retries=args.max_retries,
            log_level=args.log_level,
            wait_seconds=args.wait_seconds,
        )
        report = redrive(options)
    print(format_report(report))
    return 1 if report.failed else 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="voicebridge redrive")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
