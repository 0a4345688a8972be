"""``voicebridge capture``: read a Kinesis stream into a JSON Lines fixture that ``voicebridge replay`` replays.

- Every shard (parents before children after a reshard), from TRIM_HORIZON or AT_TIMESTAMP, with GetRecords until
  the shard is caught up (``MillisBehindLatest`` 0), closed, or past ``--until``.
- Shards are merged by arrival time (each shard's own order kept) and written with
  :func:`voicebridge.feed.fixtures.to_json_line`: ``{"partitionKey", "sequenceNumber", "approximateArrivalTimestamp",
  "data": {event}}``, or ``"dataBase64"`` for a payload that is not a JSON object, so poison replays byte-exact.
  Sequence numbers are the stream's own, so a capture lines up with ``voicebridge trace`` output.
- ``--contact ID`` keeps the records whose payload ``ContactId`` is ID (the partition key is not trusted);
  payloads that are not JSON have no ContactId and are left out.
- ``--redact`` replaces ``Transcript.Content``, ``Utterance.PartialContent`` and ``PostContactSummary.Content``
  (and any other ``Content``/``PartialContent`` string) with same-length ``x`` runs, so ids, offsets, issue character
  offsets and message sizes stay valid and the capture still replays; a payload that is not JSON becomes a
  placeholder that is still not JSON (it parks the same way).

Only the capture file holds transcript content; the summary printed on stderr has counts only.

Reading a shard shares its read limits (5 GetRecords calls per second, 2 MB/s) with every other reader, the
bridge's event source mapping included: capture says so when it starts, waits between calls that return nothing,
and retries ``ProvisionedThroughputExceededException`` with bounded exponential backoff
(:data:`THROTTLE_RETRIES` attempts, :data:`THROTTLE_BASE_DELAY_S` doubling up to :data:`THROTTLE_MAX_DELAY_S`)
before giving up with a clear line.
"""

from __future__ import annotations

import argparse
import heapq
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from voicebridge import argtypes
from voicebridge.feed.fixtures import StreamRecord, to_json_line
from voicebridge.timeparse import parse_moment

CONTENT_KEYS = frozenset({"Content", "PartialContent"})
GET_RECORDS_LIMIT = 10_000
THROTTLE_RETRIES = 8  # ~25 s of backoff in all: longer than any burst of the live mapping's reads
THROTTLE_BASE_DELAY_S = 0.2
THROTTLE_MAX_DELAY_S = 8.0
SHARED_LIMITS_NOTE = (
    "reads share each shard's limits (5 GetRecords calls/s, 2 MB/s) with the live event source mapping; "
    "throttled reads are retried with backoff, and the bridge may lag a little while this runs"
)
TRIM_HORIZON = frozenset({"trim-horizon", "trim_horizon"})
STREAM_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:([a-z0-9-]+):\d{12}:stream/(.+)$")


class CaptureError(RuntimeError):
    """Something the operator must fix (unknown stream, bad timestamp): printed without a traceback, exit 2."""


class CaptureFailed(RuntimeError):
    """The capture started but could not finish (the shard stayed throttled): printed without a traceback, exit 1."""


@dataclass
class CaptureOptions:
    stream: str
    contact_id: str | None = None
    start: float | None = None  # None: TRIM_HORIZON; else AT_TIMESTAMP (epoch seconds)
    until: float | None = None  # records that arrived after this are not captured
    redact: bool = False
    idle_sleep_s: float = 0.2  # between empty GetRecords calls of a shard that is still behind
    max_empty_polls: int = 500  # safety net per shard (a real stream may return empty pages while behind)


@dataclass
class CaptureReport:
    shards: int = 0
    read: int = 0
    written: int = 0
    contacts: set[str] = field(default_factory=set)
    not_json: int = 0
    redacted_strings: int = 0
    get_records_calls: int = 0
    throttled: int = 0  # GetRecords calls answered ProvisionedThroughputExceededException (then retried)


# -- inputs ---------------------------------------------------------------------------------------------------


def parse_time(text: str, now: float) -> float:
    """A point in time: ISO 8601 (naive means UTC), epoch seconds, or a duration back from now (``2h``, ``30m``)."""
    try:
        return parse_moment(text, now)
    except ValueError:
        raise CaptureError(f"{text!r}: expected ISO 8601 (2026-11-27T06:00:00Z), epoch seconds or 2h/30m") from None


def stream_name_and_region(stream: str) -> tuple[str, str | None]:
    """``--stream`` takes a name or an ARN (whose region then selects the client's region)."""
    match = STREAM_ARN.match(stream)
    if match:
        return match.group(2), match.group(1)
    return stream, None


# -- redaction ------------------------------------------------------------------------------------------------


def redact_event(event: Any) -> tuple[Any, int]:
    """A copy of ``event`` with every ``Content``/``PartialContent`` string replaced by ``x`` of the same length."""
    count = 0

    def walk(value: Any, key: str | None) -> Any:
        nonlocal count
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(item, None) for item in value]
        if key in CONTENT_KEYS and isinstance(value, str):
            count += 1
            return "x" * len(value)
        return value

    return walk(event, None), count


def redact_payload(data: bytes) -> tuple[bytes, int]:
    """The payload with its content redacted; a payload that is not a JSON object keeps no byte of its own."""
    try:
        event = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        event = None
    if not isinstance(event, dict):
        return f"[redacted: {len(data)} bytes that are not a JSON object".encode(), 1
    redacted, count = redact_event(event)
    return json.dumps(redacted, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), count


def payload_contact_id(data: bytes) -> str | None:
    try:
        event = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    contact = event.get("ContactId") if isinstance(event, dict) else None
    return contact if isinstance(contact, str) else None


# -- reading the stream ---------------------------------------------------------------------------------------


def list_shards(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """Every shard, parents before their children (so a reshard's records come out in order per key)."""
    from botocore.exceptions import ClientError

    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    try:
        while True:
            response = kinesis.list_shards(**kwargs)
            shards.extend(response.get("Shards", []))
            token = response.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise CaptureError(f"stream {stream!r}: {error.get('Code')}: {error.get('Message')}") from None
    by_id = {shard["ShardId"]: shard for shard in shards}
    ordered: list[dict[str, Any]] = []
    placed: set[str] = set()

    def place(shard: dict[str, Any]) -> None:
        if shard["ShardId"] in placed:
            return
        placed.add(shard["ShardId"])
        for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")):
            if parent in by_id:
                place(by_id[parent])
        ordered.append(shard)

    for shard in shards:
        place(shard)
    return ordered


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def read_shard(
    kinesis: Any,
    stream: str,
    shard_id: str,
    options: CaptureOptions,
    report: CaptureReport,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StreamRecord]:
    """The shard's records from the start position until caught up, closed or past ``options.until``."""
    kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id}
    if options.start is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs["ShardIteratorType"] = "AT_TIMESTAMP"
        kwargs["Timestamp"] = datetime.fromtimestamp(options.start, UTC)
    iterator: str | None = kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
    empty_polls = 0
    while iterator:
        response = get_records(kinesis, iterator, shard_id, report, sleep)
        records = response.get("Records", [])
        for record in records:
            arrival = _epoch(record["ApproximateArrivalTimestamp"])
            if options.until is not None and arrival > options.until:
                return
            report.read += 1
            yield StreamRecord(
                data=bytes(record["Data"]),
                partition_key=str(record["PartitionKey"]),
                sequence_number=str(record["SequenceNumber"]),
                arrival_timestamp=round(arrival, 3),
            )
        iterator = response.get("NextShardIterator")  # None once a closed shard is read to its end
        if response.get("MillisBehindLatest", 0) == 0:
            return  # caught up with the tip of the shard
        if records:
            empty_polls = 0
            continue
        empty_polls += 1
        if empty_polls > options.max_empty_polls:
            raise CaptureFailed(f"{shard_id}: {empty_polls} empty GetRecords pages while still behind; giving up")
        sleep(options.idle_sleep_s)


def get_records(
    kinesis: Any, iterator: str, shard_id: str, report: CaptureReport, sleep: Callable[[float], None]
) -> dict[str, Any]:
    """One GetRecords call, retried with exponential backoff while the shard's read limits are exceeded."""
    from botocore.exceptions import ClientError

    for attempt in range(THROTTLE_RETRIES + 1):
        report.get_records_calls += 1
        try:
            response: dict[str, Any] = kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
            return response
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ProvisionedThroughputExceededException":
                raise
            report.throttled += 1
            if attempt == THROTTLE_RETRIES:
                break
            sleep(min(THROTTLE_MAX_DELAY_S, THROTTLE_BASE_DELAY_S * 2**attempt))
    raise CaptureFailed(
        f"{shard_id}: GetRecords throttled {THROTTLE_RETRIES + 1} times in a row "
        "(ProvisionedThroughputExceededException): the shard's read limits are used by other readers; "
        "try again later or with --from closer to now"
    )


def capture(
    kinesis: Any,
    options: CaptureOptions,
    out: IO[str],
    sleep: Callable[[float], None] = time.sleep,
) -> CaptureReport:
    """Write the stream's records (filtered, redacted as asked) to ``out`` as JSON Lines; return the counts."""
    report = CaptureReport()
    stream, _ = stream_name_and_region(options.stream)
    shards = list_shards(kinesis, stream)
    report.shards = len(shards)
    per_shard: list[list[StreamRecord]] = []
    for shard in shards:
        kept = []
        for record in read_shard(kinesis, stream, shard["ShardId"], options, report, sleep):
            contact = payload_contact_id(record.data)
            if options.contact_id is not None and contact != options.contact_id:
                continue
            if contact is None:
                report.not_json += 1
            else:
                report.contacts.add(contact)
            if options.redact:
                data, count = redact_payload(record.data)
                report.redacted_strings += count
                record = StreamRecord(data, record.partition_key, record.sequence_number, record.arrival_timestamp)
            kept.append(record)
        per_shard.append(kept)
    # heapq.merge only compares the heads: each shard's own order survives even if its clock steps back.
    for record in heapq.merge(*per_shard, key=lambda r: r.arrival_timestamp):
        out.write(to_json_line(record) + "\n")
        report.written += 1
    return report


# -- the command ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", required=True, help="Kinesis stream name or ARN")
    parser.add_argument("--contact", metavar="ID", help="keep only this contact (payload ContactId)")
    parser.add_argument(
        "--from",
        dest="start",
        type=_start,
        default="trim-horizon",
        metavar="trim-horizon|TIMESTAMP",
        help="where to start: trim-horizon (default), ISO 8601, epoch seconds or a duration back (2h)",
    )
    parser.add_argument(
        "--until", type=argtypes.moment, metavar="TIMESTAMP", help="stop at records that arrived after this"
    )
    parser.add_argument("--redact", action="store_true", help="replace transcript content with same-length x runs")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=argtypes.output_file,
        metavar="FILE",
        help="JSON Lines file to write ('-': stdout)",
    )


def _start(text: str) -> str:
    return text if text.strip().lower() in TRIM_HORIZON else argtypes.moment(text)


def run(args: argparse.Namespace, kinesis: Any = None, sleep: Callable[[float], None] = time.sleep) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        now = time.time()
        start = None if args.start.strip().lower() in TRIM_HORIZON else parse_time(args.start, now)
        until = parse_time(args.until, now) if args.until else None
        if start is not None and until is not None and until < start:
            raise CaptureError("--until is before --from")
        options = CaptureOptions(args.stream, args.contact, start, until, args.redact)
        print(f"voicebridge capture: {SHARED_LIMITS_NOTE}", file=sys.stderr)
        if kinesis is None:
            import boto3

            _, region = stream_name_and_region(args.stream)
            kinesis = boto3.client("kinesis", region_name=region) if region else boto3.client("kinesis")
        if args.output == "-":
            report = capture(kinesis, options, sys.stdout, sleep)
        else:
            path = Path(args.output)
            partial = path.with_name(path.name + ".partial")
            with partial.open("w", encoding="utf-8") as out:
                report = capture(kinesis, options, out, sleep)
            partial.replace(path)
    except CaptureError as exc:
        print(f"voicebridge capture: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the output folder was checked when parsing; this is what is left (disk full...)
        print(f"voicebridge capture: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:  # no credentials or region, endpoint unreachable: the AWS set-up
        print(f"voicebridge capture: AWS: {exc}", file=sys.stderr)
        return 2
    except (CaptureFailed, ClientError) as exc:
        print(f"voicebridge capture: {'AWS error: ' if isinstance(exc, ClientError) else ''}{exc}", file=sys.stderr)
        return 1
    extras = []
    if report.not_json:
        extras.append(f"{report.not_json} not JSON")
    if args.redact:
        extras.append(f"{report.redacted_strings} content strings redacted")
    if report.throttled:
        extras.append(f"{report.throttled} throttled reads retried")
    print(
        f"voicebridge capture: {report.written} of {report.read} records, {len(report.contacts)} contact(s), "
        f"{report.shards} shard(s) -> {args.output}" + (f" ({', '.join(extras)})" if extras else ""),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="voicebridge capture")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
