"""``voicebridge sweep``: run the sweeper once, now, and print what it closed.

The deployed sweeper (``bridge.sweeper``) closes, every ``SweepSchedule``, the interactions whose contact has been
idle for ``IDLE_CLOSE_MINUTES``. This runs the same code once from a shell: after an outage, to close what a refused
close PATCH left open without waiting for the schedule, or (``--dry-run``) to see what the next sweep would do.

- ``--idle-minutes N`` (default: ``IDLE_CLOSE_MINUTES``, else 90) is the sweeper's idle rule; ``0`` closes every
  contact still open now (and retries every close a previous sweep or the bridge could not confirm).
- ``--dry-run`` lists what would be closed, reading the table only: nothing is written to DynamoDB or ServiceNow.

Each contact goes through :meth:`bridge.sweeper.Sweeper.close_if_idle`, which re-reads it consistently, applies the
sweeper's own selection (``needs_close``) and closes it exactly as a scheduled sweep does (conditional write,
PATCH, swept marker), so a contact the bridge writes meanwhile is skipped, never closed under it. Candidates come
from the same sparse index query; the only difference is that ``--idle-minutes 0`` also reads the current 5-minute
activity bucket, which a scheduled sweep never needs (its cutoff is at least 10 minutes back).

Where the configuration comes from (like ``voicebridge redrive``):
- default: the environment, exactly as the deployed sweeper reads it (``SERVICENOW_URL``, ``SERVICENOW_SECRET_ARN``,
  ``CONTACT_TABLE``, ``IDLE_CLOSE_MINUTES``, ``RECORDING_URL_TEMPLATE``... of README "Configuration"), with the
  standard AWS configuration (``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``...);
- ``--servicenow-url`` with ``--user/--password`` (or ``--client-id/--client-secret``) and ``--table``: like
  ``voicebridge replay``, it creates what is missing and sets the environment itself.

Exit status: 0 when no close failed, 1 when one did (its contact stays for the next sweep unless ServiceNow refused
it for good: 400/403/404), 2 for bad arguments or a sweeper that is not configured. Only ids, actions and error
classes are printed; no transcript content, no secret.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicebridge import argtypes
from voicebridge.feed.replay import bridge_log_level, tool_environment

if TYPE_CHECKING:
    from bridge.models import ContactState
    from bridge.ports import SweepStorePort
    from bridge.sweeper import Sweeper

PROG = "voicebridge sweep"
# The sweeper's own per-run bound (bridge.sweeper.MAX_CONTACTS_PER_SWEEP), repeated so --help imports no bridge code.
DEFAULT_MAX_CONTACTS = 500
MAX_IDLE_MINUTES = 10080  # IDLE_CLOSE_MINUTES' upper bound (bridge.sweeper.idle_close_minutes)


@dataclass
class SweepLine:
    """One contact of the report: what was (or, in a dry run, would be) done to it."""

    contact_id: str
    interaction_id: str | None
    action: str  # closed | closed_no_interaction | conflict | error | would_close
    error_class: str | None = None


@dataclass
class SweepReport:
    dry_run: bool
    idle_minutes: int
    max_contacts: int
    candidates_read: int = 0  # contact ids the index returned (bounded by max_contacts)
    lines: list[SweepLine] = field(default_factory=list)
    deferred: int = 0  # selected but not tried (the sweeper is misconfigured: every close would fail alike)

    def count(self, *actions: str) -> int:
        return sum(1 for line in self.lines if line.action in actions)

    @property
    def failed(self) -> int:
        return self.count("error")


def candidate_ids(store: SweepStorePort, now: int, idle_seconds: int, limit: int) -> list[str]:
    """The open index's contacts idle since before ``now - idle_seconds``; with 0, every one, the current bucket
    included (the index is bucketed by 5 minutes of activity and a query takes whole buckets only)."""
    from bridge.adapters.dynamodb import ACTIVITY_BUCKET_SECONDS

    idle_before = now - idle_seconds if idle_seconds else now + ACTIVITY_BUCKET_SECONDS
    return store.idle_contact_ids(idle_before, limit)


def sweep_now(idle_minutes: int | None, dry_run: bool, max_contacts: int) -> SweepReport:
    """Build the sweeper from the current environment and run it once (see the module docstring)."""
    from bridge import sweeper

    sweeper.reset()  # the wiring is cached per process: build it from this environment
    try:
        wired = sweeper.get_sweeper()
        idle_seconds = wired.idle_seconds if idle_minutes is None else idle_minutes * 60
        report = SweepReport(dry_run, idle_seconds // 60, max_contacts)
        running = listing_only(wired.sweeper) if dry_run else wired.sweeper
        ids = candidate_ids(running.store, int(running.clock()), idle_seconds, max_contacts)
        report.candidates_read = len(ids)
        for index, contact_id in enumerate(ids):
            # No Lambda timeout to stop before: every close gets the ServiceNow client's full retries.
            result = running.close_if_idle(contact_id, idle_seconds, math.inf)
            for outcome in result.outcomes:
                report.lines.append(
                    SweepLine(outcome.contact_id, outcome.interaction_id, outcome.action, outcome.error_class)
                )
            if any(outcome.error_class == "ConfigurationError" for outcome in result.outcomes):
                report.deferred = len(ids) - index - 1  # an upper bound: not every one would have been selected
                break
        return report
    finally:
        sweeper.reset()


def listing_only(deployed: Sweeper) -> Sweeper:
    """The same sweeper (store, clock, selection rule, unchanged), whose ``close`` only says it would close: the
    dry run then selects exactly as a real run does, and writes nothing to DynamoDB or ServiceNow."""
    from bridge.sweeper import Sweeper, SweepOutcome

    class ListingSweeper(Sweeper):
        def close(self, state: ContactState) -> SweepOutcome:
            return SweepOutcome(state.contact_id, "would_close", state.interaction_id)

    listing = copy.copy(deployed)  # a copy, not a new Sweeper(...): whatever the sweeper is built with is kept
    listing.__class__ = ListingSweeper
    return listing


def format_report(report: SweepReport) -> str:
    lines = []
    for line in report.lines:
        action = f"{line.action} ({line.error_class})" if line.error_class else line.action
        lines.append(f"{line.contact_id:<40} {line.interaction_id or '-':<34} {action}")
    rule = f"idle for at least {report.idle_minutes} min" if report.idle_minutes else "every open contact"
    if report.dry_run:
        lines.append(f"dry run ({rule}): {len(report.lines)} contact(s) would be closed; nothing was written")
    else:
        lines.append(
            f"swept ({rule}): closed {report.count('closed', 'closed_no_interaction')}"
            f" (without an interaction {report.count('closed_no_interaction')})"
            f" · conflicts {report.count('conflict')} (the bridge wrote them meanwhile: left open)"
            f" · failed {report.failed} · not tried {report.deferred}"
        )
    if report.candidates_read >= report.max_contacts:
        lines.append(f"stopped at --max-contacts {report.max_contacts}: run sweep again for the rest")
    return "\n".join(lines)


@contextlib.contextmanager
def _sweeper_environment(args: argparse.Namespace) -> Iterator[None]:
    """The sweeper's environment for the block; never prints a secret. Configured as replay and redrive configure
    the bridge, so a sweep closes with the URL they would have sent."""
    with tool_environment(args, "voicebridge-sweeper", "voicebridge-sweep"):
        yield


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--idle-minutes",
        type=argtypes.bounded_int(0, MAX_IDLE_MINUTES),
        default=None,
        help="close contacts idle this long, 0-10080; 0: every open contact (default: $IDLE_CLOSE_MINUTES, else 90)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be closed; write nothing")
    parser.add_argument(
        "--max-contacts",
        type=argtypes.positive_int,
        default=DEFAULT_MAX_CONTACTS,
        help=f"read at most N candidates, as one scheduled sweep does (default {DEFAULT_MAX_CONTACTS})",
    )
    parser.add_argument(
        "--servicenow-url", type=argtypes.http_url, help="configure the sweeper like replay instead of the environment"
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
        help="the sweeper's log level; its JSON lines go to stderr (default WARNING)",
    )


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.servicenow_url:
        if not args.table:
            return "--servicenow-url needs --table"
        if not (args.user and args.password) and not (args.client_id and args.client_secret):
            return "--servicenow-url needs --user/--password or --client-id/--client-secret"
    elif args.table:
        return "--table needs --servicenow-url (otherwise the table is $CONTACT_TABLE)"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _usage_error(args)
    if problem:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    from botocore.exceptions import BotoCoreError, ClientError

    from bridge.errors import BridgeError, ConfigurationError

    try:
        with _sweeper_environment(args), bridge_log_level(args.log_level):
            report = sweep_now(args.idle_minutes, args.dry_run, args.max_contacts)
    except ConfigurationError as exc:  # names the variable, never a value
        print(f"{PROG}: the sweeper is not configured: {exc}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:  # no credentials or region, endpoint unreachable: the AWS set-up
        print(f"{PROG}: AWS: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:  # AWS answered (access denied...): nothing past this point was closed
        print(f"{PROG}: AWS error: {exc}", file=sys.stderr)
        return 1
    except BridgeError as exc:  # the contact table throttled or unavailable: the next sweep finds the same contacts
        print(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 1 if report.failed else 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog=PROG)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
