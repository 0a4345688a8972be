"""Least privilege, measured: the bridge role grants exactly the DynamoDB, SQS and Secrets Manager actions (on the
resources) that the bridge's code calls, no more and no fewer.

The calls are recorded, not read from the source: every botocore client created during the test carries a
``before-parameter-build`` hook (registered the way moto registers its own stub, through botocore's built-in
handler list), and the real handler is driven through moto and the emulator over the paths that touch AWS: a whole
call, poison records delivered twice (parking and the parked markers), and an unconfigurable bridge that parks
its whole batch. The grants are read from the parsed ``template.yaml``.

Not covered here: Kinesis, CloudWatch Logs and X-Ray (Lambda's own calls with the role), Amazon Connect (moto lacks
its operations; tests/unit test the Connect adapter with botocore's Stubber) and the sweeper (its own role).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.events_builder import call_events, lambda_records
from tests.functional.conftest import Stack
from voicebridge.emulator import start_emulator
from voicebridge.feed.replay import ServiceNowTarget, ensure_resources, offline_handler_environment
from voicebridge.template import load_template

pytestmark = pytest.mark.functional

MEASURED_SERVICES = ("dynamodb", "sqs", "secretsmanager")
# IAM authorizes SQS batch operations with the single-message action (there is no sqs:SendMessageBatch action).
IAM_ACTION_OF = {
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}
# Granted for Lambda itself, not for the code: the event source mapping sends given-up batches' metadata to its
# on-failure destination with the function's role.
USED_BY_LAMBDA = {("sqs:SendMessage", "StreamFailureQueue")}

Grant = tuple[str, str]  # (IAM action, the template's logical resource, e.g. "ContactTable/index/open-idle")


@dataclass
class CallRecorder:
    """Records (IAM action, logical resource) of every AWS call made while ``active``."""

    resources: dict[str, str]  # physical name (table, queue URL, secret ARN) -> template logical id
    active: bool = False
    calls: set[Grant] = field(default_factory=set)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if not self.active:
            return
        prefix = model.service_model.signing_name
        action = IAM_ACTION_OF.get((prefix, model.name), f"{prefix}:{model.name}")
        for resource in self._resources(prefix, params):
            self.calls.add((action, resource))

    def _resources(self, prefix: str, params: dict[str, Any]) -> list[str]:
        if prefix == "dynamodb":
            tables = list(params.get("RequestItems") or {}) or [params.get("TableName", "?")]
            found = [self.resources.get(table, table) for table in tables]
            index = params.get("IndexName")
            return [f"{name}/index/{index}" for name in found] if index else found
        physical = params.get("QueueUrl") if prefix == "sqs" else params.get("SecretId")
        return [self.resources.get(str(physical), str(physical))]


def logical_resource(value: Any) -> str:
    """``{"Ref": X}`` / ``{"Fn::GetAtt": [X, "Arn"]}`` -> X; ``{"Fn::Sub": "${X.Arn}/index/i"}`` -> X/index/i."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        text: str = value["Fn::Sub"]
        head, _, rest = text.partition("}")
        return head.removeprefix("${").split(".")[0] + rest
    raise AssertionError(f"a resource this test cannot name: {value!r}")


def granted(template: dict[str, Any], role: str) -> set[Grant]:
    """(action, logical resource) of every Allow statement of the role's inline policies in the measured services
    (a conditional statement counts as granted: it is when its condition holds)."""
    grants: set[Grant] = set()
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for item in policy["PolicyDocument"]["Statement"]:
            statement = item["Fn::If"][1] if "Fn::If" in item else item
            assert statement["Effect"] == "Allow"
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            for action in actions:
                if action.split(":")[0] in MEASURED_SERVICES:
                    grants.update((action, logical_resource(resource)) for resource in resources)
    return grants


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Stack, CallRecorder]]:
    """The functional stack (moto + emulator) whose every botocore client reports its calls to a recorder."""
    import boto3
    import botocore.handlers
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from bridge import factory

    recorder = CallRecorder({})
    # Sessions copy botocore's built-in handlers when they are created: every session made from here on (the
    # bridge's, Powertools' for the secret, boto3's default one used when parking an unconfigurable batch) records.
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", recorder)],
    )
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    parameters.clear_caches()
    factory.reset()
    with start_emulator() as emulator, mock_aws():
        environment = ensure_resources("contacts", ServiceNowTarget(emulator.url, "admin", "admin"))
        environment.update(offline_handler_environment("voicebridge-tests"))
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        recorder.resources.update(
            {
                environment["CONTACT_TABLE"]: "ContactTable",
                environment["PARKING_QUEUE_URL"]: "ParkingQueue",
                environment["SERVICENOW_SECRET_ARN"]: "ServiceNowSecretArn",
            }
        )
        yield Stack(emulator, environment), recorder
        factory.reset()


def exercise_the_bridge(stack: Stack, recorder: CallRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every path of the bridge function that calls AWS, each through the real handler."""
    from bridge import factory

    recorder.active = True
    try:
        # a whole call: state read and claimed, saved per batch, the ServiceNow secret fetched, the call closed
        events = call_events("c-least", 4)
        assert stack.invoke(lambda_records(events[:3])) == {"batchItemFailures": []}
        assert stack.invoke(lambda_records(events[3:], first_sequence_number=10_000)) == {"batchItemFailures": []}
        # poison, delivered twice as a redelivered batch would be: parked once, then recognised by its marker
        poison = lambda_records([b"\x00not json", b"[1, 2]"], first_sequence_number=20_000)
        assert stack.invoke(poison) == {"batchItemFailures": []}
        assert stack.invoke(poison) == {"batchItemFailures": []}
        # an unconfigurable bridge parks its whole batch (boto3's default session)
        monkeypatch.setenv("SERVICENOW_URL", "not a url")
        factory.reset()
        assert stack.invoke(lambda_records(call_events("c-unconfigured", 1))) == {"batchItemFailures": []}
    finally:
        recorder.active = False
    assert len(stack.interactions("c-least")) == 1 and len(stack.parked()) >= 2  # the paths really ran


def test_the_bridge_role_grants_exactly_what_the_bridge_calls(
    recorded: tuple[Stack, CallRecorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, recorder = recorded
    exercise_the_bridge(stack, recorder, monkeypatch)
    grants = granted(load_template(), "BridgeFunctionRole")
    assert USED_BY_LAMBDA <= grants
    needed = grants - USED_BY_LAMBDA
    assert not recorder.calls - needed, f"called but not granted: {sorted(recorder.calls - needed)}"
    assert not needed - recorder.calls, f"granted but never called: {sorted(needed - recorder.calls)}"


def test_the_recorder_sees_a_call_the_role_does_not_grant(recorded: tuple[Stack, CallRecorder]) -> None:
    """The measurement itself: an operation outside the grants is recorded under its IAM action and resource."""
    import boto3

    stack, recorder = recorded
    recorder.active = True
    boto3.client("dynamodb").describe_table(TableName=stack.environment["CONTACT_TABLE"])
    boto3.client("sqs").send_message_batch(
        QueueUrl=stack.environment["PARKING_QUEUE_URL"], Entries=[{"Id": "1", "MessageBody": "{}"}]
    )
    assert recorder.calls == {("dynamodb:DescribeTable", "ContactTable"), ("sqs:SendMessage", "ParkingQueue")}
    assert ("dynamodb:DescribeTable", "ContactTable") not in granted(load_template(), "BridgeFunctionRole")
