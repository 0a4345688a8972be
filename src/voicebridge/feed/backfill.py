"""``voicebridge backfill``: import Contact Lens post-call analysis files from S3 into ServiceNow, through the same
importer as ``PostCallFunction`` (``bridge.postcall``). Contract: README "Historical import (post-call files)".

Lists the files of a date range by key prefix (``[PREFIX]Analysis/Voice/[Redacted/]YYYY/MM/DD/``, one listing per
day, never the whole bucket); reads S3 and DynamoDB with the standard AWS configuration (so ``AWS_ENDPOINT_URL``
pointing at a moto server works); without ``--servicenow-url`` imports into the embedded emulator and prints what
it stored. Exit 0 when every file was imported, already was, or was skipped; 1 when any was parked or failed; 2
for bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

PROG = "voicebridge backfill"
DEFAULT_TABLE = "voicebridge-backfill-contacts"
PARKING_QUEUE = "voicebridge-backfill-parking"
# Settings require a secret ARN; the backfill hands its credentials to the client directly and never reads it.
UNUSED_SECRET = "arn:aws:secretsmanager:us-east-1:000000000000:secret:voicebridge-backfill-unused"
MAX_DAYS = 3660


class ArgumentError(ValueError):
    """A bad argument: one line on stderr, exit 2."""


@dataclass(frozen=True)
class StaticCredentials:
    """The command line's ServiceNow credentials as the client's ``CredentialsProvider``."""

    credentials: Any

    def get(self, force: bool = False) -> Any:
        return self.credentials


@dataclass(frozen=True)
class Plan:
    bucket: str
    prefixes: tuple[str, ...]
    contacts: frozenset[str]


def _day(text: str, flag: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ArgumentError(f"{flag} must be a date YYYY-MM-DD, got {text!r}") from None


def plan_from(args: argparse.Namespace, today: date) -> Plan:
    from bridge.postcall.keys import AnalysisVariant, day_prefixes

    until = _day(args.until, "--until") if args.until else today
    since = _day(args.since, "--since") if args.since else until
    if since > until:
        raise ArgumentError(f"--since {since} is after --until {until}")
    if (until - since).days >= MAX_DAYS:
        raise ArgumentError(f"the date range spans more than {MAX_DAYS} days")
    if not args.bucket.strip():
        raise ArgumentError("--bucket must name the Contact Lens bucket")
    if not 1 <= args.concurrency <= 64:
        raise ArgumentError("--concurrency must be between 1 and 64")
    if args.servicenow_url and not (args.user and args.password) and not (args.client_id and args.client_secret):
        raise ArgumentError("--servicenow-url needs --user/--password or --client-id/--client-secret")
    prefixes = day_prefixes(args.prefix, AnalysisVariant(args.variant), since, until)
    return Plan(args.bucket.strip(), tuple(prefixes), frozenset(c.strip() for c in args.contact or []))


@contextlib.contextmanager
def servicenow_target(args: argparse.Namespace) -> Iterator[Any]:
    from voicebridge.feed.replay import ServiceNowTarget, _servicenow

    if args.servicenow_url:
        yield ServiceNowTarget(
            args.servicenow_url.rstrip("/"), args.user, args.password, args.client_id, args.client_secret
        )
        return
    with _servicenow(None) as target:
        yield target


def ensure_table_and_queue(table: str) -> str:
    """Create the contact table (the template's schema) if missing; the parking queue: PARKING_QUEUE_URL, else a
    ``voicebridge-backfill-parking`` queue (created if missing)."""
    import boto3

    from voicebridge.template import contact_table_create_kwargs

    dynamodb = boto3.client("dynamodb")
    try:
        dynamodb.describe_table(TableName=table)
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(**contact_table_create_kwargs(table_name=table))
        dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    queue_url = os.environ.get("PARKING_QUEUE_URL", "").strip()
    if queue_url:
        return queue_url
    return str(boto3.client("sqs").create_queue(QueueName=PARKING_QUEUE)["QueueUrl"])


def environment_for(args: argparse.Namespace, target: Any, queue_url: str, embedded: bool) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(
        SERVICENOW_URL=target.url,
        SERVICENOW_SECRET_ARN=UNUSED_SECRET,
        CONTACT_TABLE=args.table,
        PARKING_QUEUE_URL=queue_url,
        ANALYSIS_VARIANT=args.variant,
        ANALYSIS_BUCKET="",
    )
    if embedded:
        environ.setdefault("CONNECT_INSTANCE_ALIAS", "example")
    if embedded and not args.connect:
        # Offline: no Amazon Connect to ask (the configured fallbacks apply), as in replay and demo.
        environ.update(CALLER_LOOKUP="none", AGENT_LOOKUP="none")
    return environ


def list_files(objects: Any, plan: Plan) -> list[str]:
    keys: list[str] = []
    for prefix in plan.prefixes:
        for key, _etag in objects.keys(plan.bucket, prefix):
            if plan.contacts:
                name = key.rsplit("/", 1)[-1]
                if name.split("_", 1)[0] not in plan.contacts:
                    continue
            keys.append(key)
    return keys


def outcome_line(outcome: Any) -> str:
    who = outcome.contact_id or outcome.key.rsplit("/", 1)[-1]
    parts = [f"{who:<36}", outcome.status.value]
    if outcome.interaction_id:
        parts.append(f"interaction {outcome.interaction_id}")
    if outcome.turns or outcome.notes:
        parts.append(f"{outcome.turns} turns, {outcome.notes} notes, started from {outcome.anchor}")
    if outcome.reason:
        parts.append(outcome.reason)
    return "  ".join(parts)


def import_files(runtime: Any, bucket: str, keys: Sequence[str], concurrency: int, progress: bool) -> list[Any]:
    from bridge.errors import ConfigurationError, RetryableError
    from bridge.postcall.importer import ImportOutcome, ImportStatus
    from bridge.postcall.keys import parse_key

    outcomes: list[Any] = []
    lock = threading.Lock()

    def one(key: str) -> Any:
        try:
            outcome = runtime.importer.import_object(bucket, key)
        except RetryableError as exc:
            parsed = parse_key(key)
            contact = parsed.contact_id if parsed else ""
            outcome = ImportOutcome(bucket, key, ImportStatus.FAILED, f"will need a re-run: {exc}", contact)
        with lock:
            outcomes.append(outcome)
            print(outcome_line(outcome), flush=True)
            if progress:
                sys.stderr.write(f"\rbackfill: {len(outcomes)}/{len(keys)} files")
                sys.stderr.flush()
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
            for future in [pool.submit(one, key) for key in keys]:
                future.result()
    except ConfigurationError:
        raise
    finally:
        if progress:
            sys.stderr.write("\n")
    return outcomes


def summary_line(outcomes: Sequence[Any], files: int) -> str:
    from collections import Counter

    counts = Counter(o.status.value for o in outcomes)
    parts = [f"{files} files"] + [f"{status} {counts[status]}" for status in sorted(counts)]
    return "backfill: " + " · ".join(parts)


def render_interaction(interaction: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """What ServiceNow stored for one imported contact, with each turn's loudness and the notes."""
    from voicebridge.feed.demo import _clock

    lines = [
        f"Interaction {interaction['number']} · {interaction['state']} · caller {interaction['user_id']} · "
        f"contact {interaction['client_session_id']}",
        f"  conversation started: {interaction.get('conversation_started') or '-'}",
        f"  recording: {interaction.get('recording_url') or '-'}",
        f"  {len(messages)} messages in sys_cs_message:",
    ]
    for message in messages:
        if message.get("is_internal") == "true":
            lines.append(f"  {_clock(message['begin_offset_millis'])}  {'NOTE':<8} [agent only] {message['payload']}")
            continue
        sentiment = (message.get("sentiment") or "").lower()
        loudness = message.get("loudness_score") or ""
        lines.append(
            f"  {_clock(message['begin_offset_millis'])}  {message['participant']:<8} {sentiment:<8} "
            f"{message['payload']}" + (f"   loudness {loudness}" if loudness else "")
        )
    return "\n".join(lines)


def print_stored(target: Any, contact_ids: Sequence[str]) -> None:
    from voicebridge.emulator.tableclient import read_transcript
    from voicebridge.feed.demo import read_interactions

    if not contact_ids:
        return
    print()
    for interaction in read_interactions(target.url, target.basic_auth, list(contact_ids)):
        messages = read_transcript(target.url, target.basic_auth, interaction["sys_id"])
        print(render_interaction(interaction, messages), "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bucket", required=True, help="the Contact Lens (call recordings) bucket")
    parser.add_argument("--prefix", default="", help="what precedes Analysis/ in the keys (default: the bucket root)")
    parser.add_argument("--since", help="first day, YYYY-MM-DD (default: --until)")
    parser.add_argument("--until", help="last day, YYYY-MM-DD (default: today, UTC)")
    parser.add_argument("--variant", choices=("redacted", "raw"), default="redacted", help="default: redacted")
    parser.add_argument("--contact", nargs="+", metavar="ID", help="only these contact ids")
    parser.add_argument("--servicenow-url", help="a running emulator or real instance (default: embedded emulator)")
    parser.add_argument("--user", default=os.environ.get("SERVICENOW_USER", ""), help="basic auth user")
    parser.add_argument("--password", default=os.environ.get("SERVICENOW_PASSWORD", ""), help="basic auth password")
    parser.add_argument("--client-id", default="", help="OAuth client id (client credentials grant)")
    parser.add_argument("--client-secret", default=os.environ.get("SERVICENOW_CLIENT_SECRET", ""))
    parser.add_argument(
        "--table", default=DEFAULT_TABLE, help=f"contact table, created if missing (default {DEFAULT_TABLE})"
    )
    parser.add_argument("--connect", metavar="CONTACTS.json", help="DescribeContact/DescribeUser answers from a file")
    parser.add_argument("--concurrency", type=int, default=4, help="files imported at once (default 4)")
    parser.add_argument("--dry-run", action="store_true", help="list and map the files; write nothing")
    parser.add_argument("--log-level", default="WARNING", help="the importer's log level (default WARNING)")


def run(args: argparse.Namespace) -> int:
    from bridge.errors import ConfigurationError
    from bridge.postcall.aws import FileConnectClient

    try:
        plan = plan_from(args, datetime.now(UTC).date())
        connect = FileConnectClient.load(args.connect) if args.connect else None
    except (ArgumentError, OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from voicebridge.feed.replay import bridge_log_level

    embedded = not args.servicenow_url
    with servicenow_target(args) as target, bridge_log_level(args.log_level.upper()):
        try:
            runtime = _runtime(args, target, connect, embedded)
        except ConfigurationError as exc:  # a bad --servicenow-url, alias or lookup setting
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 2
        try:
            keys = list_files(runtime.objects, plan)
            print(
                f"{PROG}: {len(keys)} files under s3://{plan.bucket}/{plan.prefixes[0]}"
                + (f" .. {plan.prefixes[-1]}" if len(plan.prefixes) > 1 else "")
                + (f" into {target.url} (embedded emulator)" if embedded else f" into {target.url}")
                + (" · dry run" if args.dry_run else "")
            )
            outcomes = import_files(runtime, plan.bucket, keys, args.concurrency, sys.stderr.isatty())
        except ConfigurationError as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        print(summary_line(outcomes, len(keys)))
        if embedded and not args.dry_run:
            print_stored(target, sorted({o.contact_id for o in outcomes if o.interaction_id}))
    return 0 if all(o.ok for o in outcomes) else 1


def _runtime(args: argparse.Namespace, target: Any, connect: Any, embedded: bool) -> Any:
    from bridge.adapters.secrets import Credentials
    from bridge.postcall.wiring import build_runtime

    queue_url = ensure_table_and_queue(args.table)
    credentials = Credentials(
        username=target.username,
        password=target.password,
        client_id=target.client_id,
        client_secret=target.client_secret,
    )
    return build_runtime(
        environment_for(args, target, queue_url, embedded),
        connect_client=connect,
        dry_run=args.dry_run,
        variant=args.variant,
        credentials=StaticCredentials(credentials),
    )


def run_demo() -> int:
    """``make demo-historical``: the post-call fixtures (events/postcall/bucket: several contacts, both variants of
    one, a redacted recording, a chat file) in an in-process S3 (moto), imported into the embedded emulator with
    the same code as PostCallFunction, and what ServiceNow stored printed with loudness and the notes."""
    from pathlib import Path

    import boto3
    from moto import mock_aws

    from voicebridge.feed.replay import environment_overlay

    root = Path(__file__).resolve().parents[3] / "events" / "postcall"
    bucket = "demo-contact-lens-recordings"
    credentials = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"}
    with environment_overlay({**credentials, "CONNECT_INSTANCE_ALIAS": "example"}), mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket)
        files = sorted(path for path in (root / "bucket").rglob("*") if path.is_file())
        for path in files:
            s3.put_object(Bucket=bucket, Key=str(path.relative_to(root / "bucket")), Body=path.read_bytes())
        print(f"voicebridge demo-historical: {len(files)} objects from events/postcall/bucket in an in-process S3")
        print(
            "  ServiceNow: embedded emulator · S3, DynamoDB, SQS: in-process (moto) · Connect: connect-contacts.json\n"
        )
        parser = argparse.ArgumentParser(prog=PROG)
        add_arguments(parser)
        arguments = ["--bucket", bucket, "--since", "2026-03-14", "--until", "2026-03-14"]
        return run(parser.parse_args([*arguments, "--connect", str(root / "connect-contacts.json")]))


if __name__ == "__main__":  # python -m voicebridge.feed.backfill: the demo (make demo-historical)
    raise SystemExit(run_demo())
