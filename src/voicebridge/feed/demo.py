"""``voicebridge demo``: the whole recorded call through the real handler, then the transcript as ServiceNow
stored it (read back through the Table API), speaker by speaker. Embedded emulator and in-process AWS fakes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import requests

from bridge.redaction import RedactionMode
from voicebridge import argtypes
from voicebridge.feed.fixtures import FixtureError, load_fixtures
from voicebridge.feed.replay import ReplayOptions, format_report, replay_session

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_FIXTURE = REPO_ROOT / "events" / "full-call.jsonl"
DEFAULT_CONNECT = REPO_ROOT / "events" / "connect" / "full-call.json"  # what Amazon Connect knows about that call


def _clock(millis: str) -> str:
    seconds = int(millis or 0) // 1000
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def read_interactions(url: str, auth: tuple[str, str], contact_ids: list[str]) -> list[dict[str, Any]]:
    response = requests.get(
        f"{url}/api/now/table/interaction",
        params={"sysparm_query": f"client_session_idIN{','.join(contact_ids)}^ORDERBYnumber"},
        auth=auth,
        headers={"Accept": "application/json"},
        timeout=10,
    )
    response.raise_for_status()
    rows: list[dict[str, Any]] = response.json()["result"]
    return rows


def render_transcript(interaction: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    lines = [
        f"Interaction {interaction['number']} · {interaction['state']} · caller {interaction['user_id']} · "
        f"agent {interaction.get('assigned_to') or '-'} · contact {interaction['client_session_id']}",
        f"  recording: {interaction['recording_url'] or '-'}",
        f"  {len(messages)} messages in sys_cs_message, in Agent Workspace order (begin offset, end offset, arrival):",
    ]
    for message in messages:
        if message.get("is_internal") == "true":
            lines.append(
                f"  {_clock(message['begin_offset_millis'])}  {'NOTE':<8} {'':<8}  [agent only] {message['payload']}"
            )
            continue
        sentiment = (message.get("sentiment") or "").lower()
        lines.append(
            f"  {_clock(message['begin_offset_millis'])}  {message['participant']:<8} {sentiment:<8}  "
            f"{message['payload']}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "fixture",
        nargs="?",
        metavar="FIXTURE",
        type=argtypes.readable_file,
        default=str(DEFAULT_FIXTURE),
        help="default: events/full-call.jsonl",
    )
    parser.add_argument(
        "--batch-size", type=argtypes.batch_size, default=10, help="records per invocation, 1-10000 (default 10)"
    )
    connect = parser.add_mutually_exclusive_group()
    connect.add_argument(
        "--connect",
        metavar="CONTACTS.json",
        type=argtypes.readable_file,
        default=str(DEFAULT_CONNECT),
        help="what the Amazon Connect stand-in serves for the caller and agent lookups "
        "(default: events/connect/full-call.json)",
    )
    connect.add_argument(
        "--no-connect", action="store_true", help="no Amazon Connect: lookups off, the fallback caller id applies"
    )
    parser.add_argument(
        "--redact",
        choices=[mode.value for mode in RedactionMode],
        default=RedactionMode.NONE.value,
        help="RedactContent for this run: pci masks card numbers and SSNs, pii also e-mail and phone (default none)",
    )


def run(args: argparse.Namespace) -> int:
    from voicebridge.connect.data import ConnectDataError, load_connect_data
    from voicebridge.emulator.tableclient import read_transcript

    try:
        records = load_fixtures([args.fixture])
    except FixtureError as exc:
        print(f"voicebridge demo: {exc}", file=sys.stderr)
        return 2
    connect = None
    if not args.no_connect:
        try:
            connect = load_connect_data(args.connect)
        except ConnectDataError as exc:
            print(f"voicebridge demo: --connect {exc}", file=sys.stderr)
            return 2
    print(
        f"voicebridge demo: {len(records)} Contact Lens records from {args.fixture} through the Lambda handler "
        f"in batches of {args.batch_size}"
    )
    print("  ServiceNow: embedded emulator · DynamoDB, SQS, Secrets Manager: in-process (moto)")
    if connect is None:
        print("  Amazon Connect: none (lookups off: the fallback caller id, no agent)\n")
    else:
        print(f"  Amazon Connect: the stand-in, serving {args.connect} (caller and agent lookups on)\n")
    if args.redact != RedactionMode.NONE:
        print(f"  RedactContent={args.redact}: masked before anything is sent to ServiceNow\n")
    options = ReplayOptions(
        batch_size=args.batch_size, extra_environment={"REDACT_CONTENT": args.redact}, connect=connect
    )
    with replay_session(records, options) as (report, target):
        print(format_report(report), "\n")
        interactions = read_interactions(target.url, target.basic_auth, list(report.contacts))
        for interaction in interactions:
            messages = read_transcript(target.url, target.basic_auth, interaction["sys_id"])
            print(render_transcript(interaction, messages), "\n")
        if not interactions:
            print("no interaction was stored", file=sys.stderr)
            return 1
    return 1 if report.failed else 0
