"""``voicebridge replay``: feed fixtures through the real Lambda handler, with Kinesis event-source semantics.

ServiceNow: the embedded emulator unless ``--servicenow-url`` is given (a real instance works the same way).
AWS: DynamoDB, SQS and Secrets Manager in process (moto) unless ``--table`` is given, which uses the standard AWS
configuration (so ``AWS_ENDPOINT_URL`` pointing at a moto server works) and creates what is missing. Credentials
reach the handler the way they do in production: through a Secrets Manager secret, never an environment variable.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voicebridge import argtypes
from voicebridge.feed.fixtures import FixtureError, StreamRecord, load_fixtures
from voicebridge.feed.shard import (
    DeliveryReport,
    ShardDriver,
    arrival_polling,
    batching_window_argument,
    progress_printer,
)

# Replay runs the handler with POWERTOOLS_METRICS_DISABLED: the bridge then adds no metrics, and Powertools warns on
# every invocation that there were none. Tooling only; the deployed function never imports this module.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

REPLAY_QUEUE = "voicebridge-replay-parking"
REPLAY_SECRET = "voicebridge/replay/servicenow"
DEFAULT_TABLE = "voicebridge-replay-contacts"
EXISTING_CHECK_LIMIT = 50  # contacts looked up in ServiceNow before a replay without --table (one GET each)
EXISTING_CHECK_SECONDS = 10.0  # and the time those lookups may take in all

if TYPE_CHECKING:
    from bridge.factory import Bridge
    from voicebridge.connect.data import ConnectData


@dataclass
class ServiceNowTarget:
    url: str
    username: str = ""
    password: str = ""
    client_id: str = ""
    client_secret: str = ""

    def secret_json(self) -> str:
        data = {"username": self.username, "password": self.password} if self.username else {}
        if self.client_id:
            data.update(client_id=self.client_id, client_secret=self.client_secret)
        return json.dumps(data)

    @property
    def basic_auth(self) -> tuple[str, str]:
        return (self.username, self.password)


@dataclass
class ReplayOptions:
    servicenow: ServiceNowTarget | None = None  # None: start the embedded emulator
    batch_size: int = 100
    speed: float | None = None  # None: as fast as possible; 1.0: real time
    batching_window_s: float = 0.0  # with speed: MaximumBatchingWindowInSeconds of the simulated mapping
    historical: bool = False
    table: str | None = None  # None: in-process moto
    max_retries: int = 5
    log_level: str = "WARNING"
    forward_notes: bool = True
    progress: bool = False
    extra_environment: dict[str, str] = field(default_factory=dict)
    # Before the first batch, look up the fixtures' contacts in ServiceNow and warn on stderr about those that
    # already have an interaction (in-process state starts empty: each would get a second one).
    warn_existing: bool = False
    # --connect: serve this data from the Amazon Connect stand-in and turn the lookups on, as deployed
    connect: ConnectData | None = None


@dataclass
class ContactSummary:
    contact_id: str
    interaction_id: str | None = None
    opened: bool = False
    sent: int = 0
    notes: int = 0
    duplicates: int = 0
    parked: int = 0
    closed: bool = False
    retries: int = 0


@dataclass
class ErrorNote:
    first: str  # the first error of its class, as one line without content
    count: int = 1


@dataclass
class ErrorNotes:
    """The first error of each class the handler met (retried, parked or a function error), and how often."""

    by_class: dict[str, ErrorNote] = field(default_factory=dict)

    def add(self, reason_class: str, text: str) -> None:
        note = self.by_class.get(reason_class)
        if note is None:
            self.by_class[reason_class] = ErrorNote(text)
        else:
            note.count += 1


def describe_error(error: Mapping[str, Any], fallback: str) -> str:
    """One line for an error's data (``bridge.processor.error_data``): status, message, operation, transaction;
    never a request or response body."""
    message = str(error.get("message") or fallback)
    error_class = str(error.get("error_class") or "")
    if "operation" not in error:  # not a ServiceNow error
        return f"{error_class}: {message}" if error_class else message
    status = error.get("status")
    if status:
        text = f"{status} {message}"
    elif error_class == "ServiceNowUnavailableError":
        text = f"ServiceNow unreachable: {message}"
    else:
        text = f"ServiceNow: {message}"
    extras = [str(error["operation"])] if error.get("operation") else []
    if error.get("transaction_id"):
        extras.append(f"transaction {error['transaction_id']}")
    return text + (f" ({', '.join(extras)})" if extras else "")


@dataclass
class ReplayReport:
    servicenow: ServiceNowTarget
    delivery: DeliveryReport
    contacts: dict[str, ContactSummary]
    parked_records: int
    parked_reasons: dict[str, int]
    rejected_records: int
    errors: ErrorNotes = field(default_factory=ErrorNotes)

    @property
    def failed(self) -> bool:
        return bool(self.parked_records or self.delivery.given_up)


class ReplayContext:
    """The parts of a Lambda context the handler uses."""

    function_name = "voicebridge-replay"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:voicebridge-replay"
    log_group_name = "/aws/lambda/voicebridge-replay"
    log_stream_name = "replay"

    def __init__(self, timeout_s: float = 60.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def environment_overlay(values: dict[str, str]) -> Iterator[None]:
    """Set these environment variables for the block, then restore what was there (replay, redrive, chaos, bench)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def tool_environment(args: argparse.Namespace, service: str, namespace: str) -> Iterator[dict[str, str]]:
    """The handler's environment for a tool run by hand (redrive, sweep): the function's own environment, or with
    ``--servicenow-url`` (``--user/--password`` or ``--client-id/--client-secret``, ``--table``) what replay sets up.
    Powertools stays quiet unless the caller's environment says otherwise. Yields the environment in force."""
    quiet = {
        "POWERTOOLS_SERVICE_NAME": os.environ.get("POWERTOOLS_SERVICE_NAME", service),
        "POWERTOOLS_METRICS_NAMESPACE": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", namespace),
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
    }
    if not args.servicenow_url:
        with environment_overlay(quiet):
            yield dict(os.environ)
        return
    target = ServiceNowTarget(args.servicenow_url, args.user, args.password, args.client_id, args.client_secret)
    environment = ensure_resources(args.table, target)
    environment.update(quiet, CALLER_LOOKUP="none", AGENT_LOOKUP="none", CONNECT_INSTANCE_ALIAS="example")
    with environment_overlay(environment):
        yield environment


@contextlib.contextmanager
def _servicenow(target: ServiceNowTarget | None) -> Iterator[ServiceNowTarget]:
    if target is not None:
        yield target
        return
    from voicebridge.emulator import EmulatorOptions, start_emulator

    options = EmulatorOptions()
    with start_emulator(options) as emulator:
        yield ServiceNowTarget(emulator.url, options.user, options.password)


@contextlib.contextmanager
def aws_resources(table: str | None) -> Iterator[str]:
    """AWS resources for the handler: moto in process, or the standard configuration when a table is named."""
    if table is not None:
        yield table
        return
    try:
        from moto import mock_aws
    except ImportError:  # pragma: no cover - moto ships with the dev extras
        raise SystemExit("replay needs moto for in-process AWS: pip install -e '.[dev]' (or pass --table)") from None
    with (
        environment_overlay(
            {
                "AWS_ACCESS_KEY_ID": "replay",
                "AWS_SECRET_ACCESS_KEY": "replay",
                "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            }
        ),
        mock_aws(),
    ):
        yield DEFAULT_TABLE


def ensure_resources(table: str, target: ServiceNowTarget) -> dict[str, str]:
    """Create (or reuse) the contact table, parking queue and ServiceNow secret; return the handler's env."""
    import boto3

    from voicebridge.template import contact_table_create_kwargs

    dynamodb = boto3.client("dynamodb")
    try:
        dynamodb.describe_table(TableName=table)
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(**contact_table_create_kwargs(table_name=table))
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    queue_url = boto3.client("sqs").create_queue(QueueName=REPLAY_QUEUE)["QueueUrl"]
    secrets = boto3.client("secretsmanager")
    try:
        arn = secrets.create_secret(Name=REPLAY_SECRET, SecretString=target.secret_json())["ARN"]
    except secrets.exceptions.ResourceExistsException:
        arn = secrets.put_secret_value(SecretId=REPLAY_SECRET, SecretString=target.secret_json())["ARN"]
    return {
        "SERVICENOW_URL": target.url,
        "SERVICENOW_SECRET_ARN": arn,
        "CONTACT_TABLE": table,
        "PARKING_QUEUE_URL": queue_url,
    }


@contextlib.contextmanager
def bridge_log_level(level: str | int) -> Iterator[None]:
    """The bridge logger's level for the block, and its JSON lines on stderr (a command's report owns stdout);
    both restored after: it is one logger per process, shared by every replay, redrive and test in it."""
    import logging

    from bridge.log import logger

    previous = logger.log_level
    handler = logger.registered_handler
    stream_handler = handler if isinstance(handler, logging.StreamHandler) else None
    stream = stream_handler.setStream(sys.stderr) if stream_handler is not None else None
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if stream_handler is not None and stream is not None:
            stream_handler.setStream(stream)


def offline_handler_environment(metrics_namespace: str = "voicebridge-replay") -> dict[str, str]:
    """What the handler needs besides its resources when it runs offline: no Amazon Connect to ask for callers and
    agents (the fallbacks apply), no CloudWatch to send metrics to, an instance alias for the recording URL."""
    return {
        "POWERTOOLS_SERVICE_NAME": "voicebridge",
        "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
        "POWERTOOLS_METRICS_DISABLED": "true",
        "CALLER_LOOKUP": "none",
        "AGENT_LOOKUP": "none",
        "CONNECT_INSTANCE_ALIAS": "example",
        # Replay reports a failure at once instead of holding the shard through an outage (the deployed function
        # holds it; tests of the hold set this themselves).
        "OUTAGE_HOLD_SECONDS": "0",
    }


def contact_of(record: StreamRecord) -> str:
    try:
        event = record.decoded()
    except ValueError:
        return record.partition_key
    contact = event.get("ContactId") if isinstance(event, dict) else None
    return str(contact) if contact else record.partition_key


def replay(records: Sequence[StreamRecord], options: ReplayOptions) -> ReplayReport:
    """Run the records through the handler and report what happened (ServiceNow keeps running state only while
    inside this call when the emulator is embedded: use :func:`replay_session` to read it back afterwards)."""
    with replay_session(records, options) as (report, _target):
        return report


@contextlib.contextmanager
def replay_session(
    records: Sequence[StreamRecord], options: ReplayOptions
) -> Iterator[tuple[ReplayReport, ServiceNowTarget]]:
    """Like :func:`replay`, but keeps the embedded emulator (and moto) alive until the block ends."""
    from voicebridge.connect.session import replay_connect

    with (
        _servicenow(options.servicenow) as target,
        aws_resources(options.table) as table,
        replay_connect(options.connect) as connect,
    ):
        environment = ensure_resources(table, target)
        environment.update(offline_handler_environment())
        if connect is not None:
            environment.update(connect.handler_environment)
        environment["FORWARD_NOTES"] = "true" if options.forward_notes else "false"
        environment.update(options.extra_environment)
        with environment_overlay(environment), bridge_log_level(options.log_level):
            report = _drive(records, options, target, connect.feed if connect is not None else None)
            yield report, target


def _drive(
    records: Sequence[StreamRecord],
    options: ReplayOptions,
    target: ServiceNowTarget,
    on_delivery: Callable[[dict[str, Any]], None] | None = None,  # sees each event before the handler does
) -> ReplayReport:
    from bridge import factory
    from bridge.handler import lambda_handler
    from bridge.processor import BatchResult

    factory.reset()
    bridge = factory.get_bridge()  # ConfigurationError here: the caller says which setting, before any batch
    if options.warn_existing:
        warn_existing_interactions(bridge, records)
    contacts: dict[str, ContactSummary] = {}
    parked: dict[str, int] = {}
    rejected = 0
    errors = ErrorNotes()

    def observe(result: BatchResult) -> None:
        nonlocal rejected
        rejected += len(result.rejected)
        for item in result.parked:
            errors.add(item.reason_class, describe_error(item.error, item.reason))
        for outcome in result.outcomes:
            if outcome.retry and outcome.error:  # parked ones are noted above, with the parked item's data
                errors.add(str(outcome.error["reason_class"]), describe_error(outcome.error, outcome.error_class or ""))
            summary = contacts.setdefault(outcome.contact_id, ContactSummary(outcome.contact_id))
            summary.interaction_id = outcome.interaction_id or summary.interaction_id
            summary.opened |= outcome.opened
            summary.sent += outcome.sent
            summary.notes += outcome.notes_sent
            summary.duplicates += outcome.duplicates
            summary.closed |= outcome.closed
            summary.retries += outcome.retry
        for item in result.parked:
            parked[item.reason_class] = parked.get(item.reason_class, 0) + len(item.records)
            if item.contact_id:
                contacts.setdefault(item.contact_id, ContactSummary(item.contact_id)).parked += len(item.records)

    def invoke_handler(event: dict[str, Any]) -> Any:
        if on_delivery is not None:
            on_delivery(event)
        try:
            return lambda_handler(event, ReplayContext())
        except Exception as exc:  # a function error: the shard driver redelivers, the report says why
            errors.add("function_error", f"{type(exc).__name__}: {exc}")
            raise

    bridge.processor.observers.append(observe)
    progress = progress_printer("replay", len(records)) if options.progress else None
    try:
        if options.historical:
            delivery = DeliveryReport(records=len(records))
            for contact_records in _by_contact(records).values():
                driver = ShardDriver(
                    contact_records,
                    lambda event: _historical(bridge, event, on_delivery),
                    batch_size=len(contact_records),
                    max_retries=options.max_retries,
                )
                part = driver.run()
                delivery.invocations += part.invocations
                delivery.redelivered_records += part.redelivered_records
                delivery.function_errors += part.function_errors
                delivery.given_up.extend(part.given_up)
        else:
            driver = ShardDriver(
                records,
                invoke_handler,
                batch_size=options.batch_size,
                max_retries=options.max_retries,
                polling=arrival_polling(records, options.speed, options.batching_window_s) if options.speed else None,
                on_batch=progress,
            )
            delivery = driver.run()
    finally:
        bridge.processor.observers.remove(observe)
        if progress is not None:
            sys.stderr.write("\n")
    factory.reset()
    return ReplayReport(target, delivery, contacts, sum(parked.values()), parked, rejected, errors)


def warn_existing_interactions(
    bridge: Bridge, records: Sequence[StreamRecord], monotonic: Callable[[], float] = time.monotonic
) -> None:
    """Warn (stderr) about contacts of these records that already have an interaction in ServiceNow: without
    --table the replay's state starts empty, so each of them would get a second interaction. Never fails the
    replay: a lookup that cannot be made is said and the replay goes on (its report then names the error)."""
    from bridge.errors import BridgeError
    from bridge.processor import error_data

    contacts = list(dict.fromkeys(contact_of(record) for record in records))
    candidates = contacts[:EXISTING_CHECK_LIMIT]
    checked = 0
    found: list[tuple[str, str]] = []
    # A courtesy check, bounded in time (the client's retries stop at this deadline too); the replay's own
    # requests get the invocation's deadline again.
    deadline = monotonic() + EXISTING_CHECK_SECONDS
    bridge.servicenow.deadline = deadline
    try:
        for contact in candidates:
            if monotonic() >= deadline:
                break
            interaction = bridge.servicenow.find_interaction(contact)
            checked += 1
            if interaction:
                found.append((contact, interaction))
    except BridgeError as exc:
        description = describe_error(error_data(exc), str(exc))
        print(f"voicebridge replay: could not check for existing interactions: {description}", file=sys.stderr)
        return
    finally:
        bridge.servicenow.deadline = None
    if not found:
        return
    examples = ", ".join(f"{contact} ({interaction})" for contact, interaction in found[:3])
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    scope = f" (the first {checked} of {len(contacts)})" if checked < len(contacts) else ""
    print(
        f"voicebridge replay: warning: ServiceNow already has an interaction for {len(found)} of {checked} "
        f"contact(s) checked{scope}: {examples}{more}; this replay's state starts empty, so each gets a second "
        f"interaction (pass --table to keep state between replays)",
        file=sys.stderr,
    )


def _historical(bridge: Bridge, event: dict[str, Any], on_delivery: Callable[[dict[str, Any]], None] | None) -> Any:
    if on_delivery is not None:
        on_delivery(event)
    return bridge.process(event["Records"], 60_000, historical=True).response()


def _by_contact(records: Sequence[StreamRecord]) -> dict[str, list[StreamRecord]]:
    groups: dict[str, list[StreamRecord]] = {}
    for record in records:
        groups.setdefault(contact_of(record), []).append(record)
    return groups


def format_report(report: ReplayReport) -> str:
    lines = [
        f"{'contact':<38} {'interaction':<33} {'opened':>6} {'sent':>5} {'notes':>5} {'dups':>5} "
        f"{'parked':>6} {'closed':>6}"
    ]
    for summary in report.contacts.values():
        lines.append(
            f"{summary.contact_id[:38]:<38} {(summary.interaction_id or '-'):<33} {_yes(summary.opened):>6} "
            f"{summary.sent:>5} {summary.notes:>5} {summary.duplicates:>5} {summary.parked:>6} "
            f"{_yes(summary.closed):>6}"
        )
    delivery = report.delivery
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(report.parked_reasons.items())) or "none"
    lines.append(
        f"records {delivery.records} · invocations {delivery.invocations} · redelivered {delivery.redelivered_records}"
        f" · function errors {delivery.function_errors} · given up {len(delivery.given_up)} · parked "
        f"{report.parked_records} ({reasons}) · {delivery.wall_seconds:.2f}s"
    )
    if report.errors.by_class:
        lines.append("why (the first error of each class; the handler's log lines on stderr have them all):")
        for reason_class, note in sorted(report.errors.by_class.items()):
            lines.append(f"  {reason_class} x{note.count}: {note.first}")
    return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "fixtures",
        nargs="+",
        metavar="FIXTURE",
        type=argtypes.readable_file,
        help="Kinesis event JSON or JSON Lines files",
    )
    parser.add_argument(
        "--servicenow-url",
        type=argtypes.http_url,
        help="a running emulator or real instance (default: embedded emulator)",
    )
    parser.add_argument("--user", default=os.environ.get("SERVICENOW_USER", ""), help="basic auth user")
    parser.add_argument("--password", default=os.environ.get("SERVICENOW_PASSWORD", ""), help="basic auth password")
    parser.add_argument("--client-id", default="", help="OAuth client id (client credentials grant)")
    parser.add_argument("--client-secret", default=os.environ.get("SERVICENOW_CLIENT_SECRET", ""))
    parser.add_argument(
        "--batch-size", type=argtypes.batch_size, default=100, help="records per invocation, 1-10000 (default 100)"
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        action="store_true",
        help="deliver at the records' arrival pace, as the event source mapping polls (about once a second)",
    )
    pace.add_argument(
        "--speed", type=argtypes.positive_float, help="arrival pace multiplied by X > 0 (2 = twice as fast)"
    )
    parser.add_argument(
        "--batching-window",
        type=batching_window_argument,
        default=0.0,
        metavar="SECONDS",
        help="with --realtime/--speed: gather records this long before invoking, as MaximumBatchingWindowInSeconds "
        "(0-300, default 0)",
    )
    parser.add_argument(
        "--historical",
        action="store_true",
        help="send each finished call in one POST /cs/voice-interactions/transcript",
    )
    parser.add_argument("--table", help="use this DynamoDB table via the standard AWS configuration")
    parser.add_argument(
        "--max-retries",
        type=argtypes.non_negative_int,
        default=5,
        help="redeliveries of one position before giving up (default 5)",
    )
    parser.add_argument("--no-notes", action="store_true", help="do not forward categories and summaries")
    parser.add_argument(
        "--connect",
        metavar="CONTACTS.json",
        type=argtypes.readable_file,
        help="serve these contacts, users and attributes from the Amazon Connect stand-in and look up callers and "
        "agents as the deployed function does (README: The Amazon Connect stand-in)",
    )
    parser.add_argument(
        "--log-level",
        type=argtypes.log_level,
        default="WARNING",
        help="the handler's log level; its JSON lines go to stderr (default WARNING)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        records = load_fixtures(args.fixtures)
    except FixtureError as exc:
        print(f"voicebridge replay: {exc}", file=sys.stderr)
        return 2
    connect = None
    if args.connect:
        from voicebridge.connect.data import ConnectDataError, load_connect_data

        try:
            connect = load_connect_data(args.connect)
        except ConnectDataError as exc:
            print(f"voicebridge replay: --connect {exc}", file=sys.stderr)
            return 2
    target = None
    if args.servicenow_url:
        if not (args.user and args.password) and not (args.client_id and args.client_secret):
            print(
                "voicebridge replay: --servicenow-url needs --user/--password or --client-id/--client-secret",
                file=sys.stderr,
            )
            return 2
        target = ServiceNowTarget(args.servicenow_url, args.user, args.password, args.client_id, args.client_secret)
    options = ReplayOptions(
        servicenow=target,
        batch_size=args.batch_size,
        speed=1.0 if args.realtime else args.speed,
        batching_window_s=args.batching_window,
        historical=args.historical,
        table=args.table,
        max_retries=args.max_retries,
        log_level=args.log_level.upper(),
        forward_notes=not args.no_notes,
        progress=sys.stderr.isatty(),
        # State lives in ServiceNow and in the table; without --table only ServiceNow remembers a previous replay.
        warn_existing=target is not None and args.table is None,
        connect=connect,
    )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        report = replay(records, options)
    except BotoCoreError as exc:  # --table without credentials, region or a reachable endpoint: the AWS set-up
        print(f"voicebridge replay: AWS: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:  # AWS answered (access denied, a limit...)
        print(f"voicebridge replay: AWS error: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 1 if report.failed else 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="voicebridge replay")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
