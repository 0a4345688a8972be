"""No transcript content, caller number or secret in any log line (default and DEBUG levels)."""

from __future__ import annotations

import io
import json
import logging

import boto3
import pytest

from tests.events_builder import envelope, lambda_records, transcript
from tests.functional.conftest import Stack
from voicebridge.feed.fixtures import load_fixture

pytestmark = pytest.mark.functional
PASSWORD = "s3cr3t-Pa55word!"


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_logs_never_carry_content_numbers_or_secrets(stack: Stack, level: str) -> None:
    from bridge.log import logger

    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)  # the exact JSON lines Lambda would ship
    logger._logger.addHandler(handler)
    previous = logger.log_level
    logger.setLevel(level)
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.environment["SERVICENOW_SECRET_ARN"],
        SecretString=json.dumps({"username": "admin", "password": PASSWORD}),
    )
    # the emulator only knows admin/admin: the wrong password makes the client go through its 401 path too
    records = [r.to_lambda_record() for r in load_fixture("events/full-call.jsonl")]
    stack.invoke(records[:5])
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.environment["SERVICENOW_SECRET_ARN"],
        SecretString=json.dumps({"username": "admin", "password": "admin"}),
    )
    for start in range(0, len(records), 10):
        stack.invoke(records[start : start + 10])
    stack.invoke(
        lambda_records(
            [
                envelope(
                    "c-inject",
                    "SEGMENTS",
                    [transcript("inj", 'line\n{"level":"ERROR","message":"forged"}\r\x1b[31m', begin=1)],
                )
            ]
        )
    )
    logger.setLevel(previous)
    logger._logger.removeHandler(handler)
    logged = sink.getvalue()
    assert '"message":"servicenow call"' in logged  # the capture did see the bridge's logs
    assert level != "DEBUG" or '"message":"messages sent"' in logged
    contents = [
        json.loads(r.data)["Segments"] for r in load_fixture("events/full-call.jsonl") if b'"Segments"' in r.data
    ]
    texts = {seg["Transcript"]["Content"] for segs in contents for seg in segs if "Transcript" in seg}
    texts |= {seg["Utterance"]["PartialContent"] for segs in contents for seg in segs if "Utterance" in seg}
    texts = {text for text in texts if len(text) >= 12}  # short partials ("do") match ordinary words
    assert len(texts) > 60
    for text in texts | {"4111 1111 1111 1111", "123-45-6789", PASSWORD, "forged"}:
        assert text not in logged, f"leaked: {text[:30]}"
    for line in logged.splitlines():  # every line is one JSON document: nothing forged a line
        if line.strip():
            json.loads(line)
