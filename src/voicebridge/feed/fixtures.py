"""Event fixtures: load the formats ``voicebridge replay`` accepts and build Lambda Kinesis envelopes.

One builder serves tests, replay, the demo and the benchmarks, so they all feed the handler exactly the
shape the Kinesis event source mapping delivers (``Records[].kinesis.{data (base64), sequenceNumber, ...}``).

Accepted fixture formats (design.md):
- a Lambda Kinesis event ``{"Records": [...]}`` (the files ``sam local invoke -e`` takes);
- JSON Lines of decoded Contact Lens events, one per line, either bare or wrapped as
  ``{"partitionKey", "sequenceNumber", "approximateArrivalTimestamp", "data": {event}}`` (capture's format).
  Extension: a payload that is not a JSON object is written as ``"dataBase64"`` instead of ``"data"``, so
  captured poison records replay byte-exact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Real Kinesis sequence numbers are 56-digit decimal strings compared as integers; start from a realistic one
# so code that treats them as short strings or floats breaks in tests, not in production.
FIRST_SEQUENCE_NUMBER = 49590338271490256608559692538361571095921575989136588898
SEQUENCE_STEP = 1000
DEFAULT_SHARD_ID = "shardId-000000000000"
DEFAULT_STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/contact-lens-segments"
DEFAULT_REGION = "us-east-1"


class FixtureError(ValueError):
    """A fixture file is not in any accepted format; the message names the file and line."""


@dataclass(frozen=True)
class StreamRecord:
    """One record as it sits on the stream: raw payload bytes plus Kinesis metadata."""

    data: bytes
    partition_key: str
    sequence_number: str
    arrival_timestamp: float
    # The record's ``data`` exactly as delivered when it was not valid base64 (poison kept verbatim on replay).
    raw_data_b64: str | None = None

    def to_lambda_record(
        self, shard_id: str = DEFAULT_SHARD_ID, stream_arn: str = DEFAULT_STREAM_ARN, region: str = DEFAULT_REGION
    ) -> dict[str, Any]:
        """The record exactly as Lambda's Kinesis event source mapping delivers it."""
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": self.partition_key,
                "sequenceNumber": self.sequence_number,
                "data": self.raw_data_b64 if self.raw_data_b64 is not None else base64.b64encode(self.data).decode(),
                "approximateArrivalTimestamp": self.arrival_timestamp,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{self.sequence_number}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/voicebridge-replay",
            "awsRegion": region,
            "eventSourceARN": stream_arn,
        }

    def decoded(self) -> Any:
        """The payload parsed as strict UTF-8 JSON (raises ValueError when it is not)."""
        return json.loads(self.data.decode("utf-8"))


def encode_event(event: Any) -> bytes:
    """Serialise a decoded Contact Lens event the way Connect puts it on the stream (compact UTF-8 JSON)."""
    if isinstance(event, bytes):
        return event
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def build_records(
    events: Iterable[Any],
    first_sequence_number: int = FIRST_SEQUENCE_NUMBER,
    start_timestamp: float = 1_764_230_400.0,
    seconds_between: float = 0.5,
) -> list[StreamRecord]:
    """Turn decoded events (dicts, or raw bytes for deliberately malformed payloads) into stream records.

    The partition key is the event's ContactId where there is one (what Connect most probably uses).
    """
    records = []
    for index, event in enumerate(events):
        contact_id = event.get("ContactId") if isinstance(event, dict) else None
        records.append(
            StreamRecord(
                data=encode_event(event),
                partition_key=str(contact_id or "unknown"),
                sequence_number=str(first_sequence_number + index * SEQUENCE_STEP),
                arrival_timestamp=round(start_timestamp + index * seconds_between, 3),
            )
        )
    return records


def kinesis_event(records: Iterable[StreamRecord], **kwargs: str) -> dict[str, Any]:
    """A Lambda Kinesis event for these records (``{"Records": [...]}``)."""
    return {"Records": [record.to_lambda_record(**kwargs) for record in records]}


def from_lambda_record(record: dict[str, Any]) -> StreamRecord:
    """The inverse of :meth:`StreamRecord.to_lambda_record` (keeps undecodable data as raw bytes)."""
    kinesis = record["kinesis"]
    raw = kinesis.get("data", "")
    verbatim: str | None = None
    try:
        data = base64.b64decode(raw, validate=True)
    except (ValueError, TypeError):
        # Keep the undecodable text itself: the handler must see (and park) it, not the loader.
        data = str(raw).encode("utf-8", "replace")
        verbatim = str(raw)
    return StreamRecord(
        data=data,
        partition_key=str(kinesis.get("partitionKey", "")),
        sequence_number=str(kinesis["sequenceNumber"]),
        arrival_timestamp=float(kinesis.get("approximateArrivalTimestamp", 0.0)),
        raw_data_b64=verbatim,
    )


def _iter_json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise FixtureError(f"{path}:{line_number}: not JSON ({exc.msg})") from exc


def load_fixture(path: str | Path) -> list[StreamRecord]:
    """Read one fixture file in any accepted format, in stream order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read ({exc.strerror})") from exc
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None  # JSON Lines also starts with "{"
        if isinstance(document, dict) and isinstance(document.get("Records"), list):
            try:
                records = [from_lambda_record(record) for record in document["Records"]]
            except (KeyError, TypeError) as exc:
                raise FixtureError(f"{path}: a record lacks kinesis.sequenceNumber") from exc
            for index, record in enumerate(records):
                _checked_sequence(path, f"Records[{index}]", record.sequence_number)
            return records
        if isinstance(document, dict):
            return _records_from_lines(path, [(1, document)])
    return _records_from_lines(path, list(_iter_json_lines(path, text)))


def _wrapped_data(path: Path, line_number: int, item: dict[str, Any]) -> bytes:
    # A payload that was not a JSON object (poison captured from a live stream) is kept byte-exact as base64.
    if "dataBase64" in item:
        try:
            return base64.b64decode(str(item["dataBase64"]), validate=True)
        except (ValueError, TypeError) as exc:
            raise FixtureError(f"{path}:{line_number}: dataBase64 is not base64") from exc
    return encode_event(item["data"])


def _checked_sequence(path: Path, where: str, value: Any) -> str:
    text = str(value)
    if not text.isdigit():
        raise FixtureError(f"{path}:{where}: sequenceNumber {text[:60]!r} is not a decimal number")
    return text


def _records_from_lines(path: Path, lines: list[tuple[int, Any]]) -> list[StreamRecord]:
    bare: list[Any] = []
    records: list[StreamRecord] = []
    for line_number, item in lines:
        if isinstance(item, dict) and ("data" in item or "dataBase64" in item) and "sequenceNumber" in item:
            records.append(
                StreamRecord(
                    data=_wrapped_data(path, line_number, item),
                    partition_key=str(item.get("partitionKey", "")),
                    sequence_number=_checked_sequence(path, str(line_number), item["sequenceNumber"]),
                    arrival_timestamp=float(item.get("approximateArrivalTimestamp", 0.0)),
                )
            )
        elif isinstance(item, dict):
            bare.append(item)
        else:
            raise FixtureError(f"{path}:{line_number}: expected a JSON object per line")
    if bare and records:
        raise FixtureError(f"{path}: mixes bare events and wrapped records")
    if not bare and not records:
        raise FixtureError(f"{path}: holds no records")
    return records or build_records(bare)


def load_fixtures(paths: Iterable[str | Path]) -> list[StreamRecord]:
    """Several fixtures in stream order. Each file keeps its own sequence numbers (a file may deliberately hold
    redeliveries); only when files are combined and their numbers would collide or run backwards across files is
    everything renumbered in concatenation order."""
    per_file = [load_fixture(path) for path in paths]
    all_records = [record for records in per_file for record in records]
    if len(per_file) <= 1:
        return all_records
    ranges = [(min(int(r.sequence_number) for r in rs), max(int(r.sequence_number) for r in rs)) for rs in per_file]
    if all(previous[1] < following[0] for previous, following in zip(ranges, ranges[1:], strict=False)):
        return all_records
    return [
        replace(record, sequence_number=str(FIRST_SEQUENCE_NUMBER + i * SEQUENCE_STEP))
        for i, record in enumerate(all_records)
    ]


def to_json_line(record: StreamRecord) -> str:
    """Capture's JSON Lines form of one record (``data`` decoded when it is JSON, else kept as text)."""
    line: dict[str, Any] = {
        "partitionKey": record.partition_key,
        "sequenceNumber": record.sequence_number,
        "approximateArrivalTimestamp": record.arrival_timestamp,
    }
    try:
        data: Any = json.loads(record.data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        data = None
    if isinstance(data, dict):
        line["data"] = data
    else:
        # Not a JSON object (poison): keep the exact bytes so a replay parks exactly what the stream carried.
        line["dataBase64"] = base64.b64encode(record.data).decode("ascii")
    return json.dumps(line, ensure_ascii=False)
