"""Least privilege of PostCallFunctionRole, measured: the AWS calls the real post-call handler makes (moto, the
emulator over HTTP) are exactly what the role grants in DynamoDB, SQS and Secrets Manager, and its S3 reads are
GetObject calls inside the prefix the role names. Recorded the way tests/template/test_iam_least_privilege.py
records the bridge's calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.template.test_iam_least_privilege import CallRecorder, granted
from voicebridge.emulator import start_emulator
from voicebridge.feed.replay import ReplayContext, ServiceNowTarget, ensure_resources, offline_handler_environment
from voicebridge.template import load_template

FIXTURES = Path(__file__).resolve().parents[2] / "events" / "postcall" / "bucket"
SAMPLES = Path("/work/shared/reference/samples/postcall")
BUCKET = "recordings"
C1 = "3f1c2b9a-7d4e-4c1a-9e2b-5a6d7c8e9f01"
C1_REDACTED = f"Analysis/Voice/Redacted/2026/03/14/{C1}_analysis_redacted_2026-03-14T10:09:41Z.json"
# Granted for Lambda itself: the asynchronous invocation's on-failure destination is sent to with the role.
USED_BY_LAMBDA = {("sqs:SendMessage", "PostCallFailureQueue")}


class S3AwareRecorder(CallRecorder):
    """Also names S3 calls by bucket and key (``s3:GetObject``, ``BUCKET/KEY``)."""

    def _resources(self, prefix: str, params: dict[str, Any]) -> list[str]:
        if prefix == "s3":
            return [f"{params.get('Bucket')}/{params.get('Key', '')}"]
        return super()._resources(prefix, params)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3AwareRecorder]:
    import botocore.handlers
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from bridge.postcall import wiring

    recorder = S3AwareRecorder({})
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", recorder)],
    )
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    parameters.clear_caches()
    wiring.reset()
    with start_emulator() as emulator, mock_aws():
        environment = ensure_resources("contacts", ServiceNowTarget(emulator.url, "admin", "admin"))
        environment.update(offline_handler_environment("voicebridge-tests"), TRANSCRIPT_SOURCE="postcall")
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        recorder.resources.update(
            {
                environment["CONTACT_TABLE"]: "ContactTable",
                environment["PARKING_QUEUE_URL"]: "ParkingQueue",
                environment["SERVICENOW_SECRET_ARN"]: "ServiceNowSecretArn",
            }
        )
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for path in FIXTURES.rglob("*"):
            if path.is_file():
                s3.put_object(Bucket=BUCKET, Key=str(path.relative_to(FIXTURES)), Body=path.read_bytes())
        bad = C1_REDACTED.replace(C1, "0f0e0d0c-0b0a-4908-8706-050403020100")
        s3.put_object(Bucket=BUCKET, Key=bad, Body=(SAMPLES / "awsdocs-current-original.not-json.txt").read_bytes())
        yield recorder
        wiring.reset()


def created(key: str) -> dict[str, Any]:
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key}},
    }


def test_the_postcall_role_grants_exactly_what_the_handler_calls(recorded: S3AwareRecorder) -> None:
    from bridge.postcall_handler import lambda_handler

    recorded.active = True
    keys = [str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file()]
    for key in [*keys, *keys]:  # imports, then "already imported"
        lambda_handler(created(key), ReplayContext(60))
    lambda_handler(created(C1_REDACTED.replace(C1, "0f0e0d0c-0b0a-4908-8706-050403020100")), ReplayContext(60))
    lambda_handler({"unrecognised": True}, ReplayContext(60))  # parked whole
    recorded.active = False

    template = load_template()
    s3_calls = {(action, resource) for action, resource in recorded.calls if action.startswith("s3:")}
    others = recorded.calls - s3_calls
    assert others == granted(template, "PostCallFunctionRole") - USED_BY_LAMBDA
    assert {action for action, _ in s3_calls} == {"s3:GetObject"}
    # The role's redacted-variant resource: BUCKET/${AnalysisKeyPrefix}Analysis/Voice/Redacted/*.
    assert all(resource.startswith(f"{BUCKET}/Analysis/Voice/Redacted/") for _, resource in s3_calls), s3_calls
