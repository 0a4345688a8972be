"""`voicebridge smoke` against a deployed-like stack: AWS in moto (CloudFormation outputs, Secrets Manager, Lambda's
event source mapping, SQS, CloudWatch, DynamoDB), Amazon Connect through a botocore Stubber (moto has no
ListInstanceStorageConfigs), ServiceNow through the emulator over HTTP. One test per broken piece shows its ✗ line.

:func:`deploy_fake_stack` is shared with tests/integration/test_smoke_cli.py (there against moto_server).
"""

from __future__ import annotations

import io
import json
import socket
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from voicebridge import cli
from voicebridge.emulator import EmulatorOptions, RunningEmulator, start_emulator
from voicebridge.operate import smoke
from voicebridge.template import contact_table_create_kwargs

pytestmark = pytest.mark.functional

STACK = "voicebridge-smoke-test"
INSTANCE_ID = "0c3fd1a6-26ad-4c2e-9a1b-0a6e1ab8bd39"
ALARM_SUFFIXES = ("iterator-age", "parked-records", "batches-given-up", "function-error-rate", "servicenow-error-rate")
BASIC = {"username": "admin", "password": "admin"}
OAUTH = {"client_id": "voicebridge", "client_secret": "voicebridge"}


@dataclass
class FakeStack:
    """What `sam deploy` would have created, by name (in whatever AWS boto3 is pointed at)."""

    name: str
    servicenow_url: str
    secret_arn: str
    function: str
    stream_arn: str
    other_stream_arn: str
    table: str
    parking_queue_url: str
    failure_queue_url: str
    mapping_uuid: str
    alarm_names: list[str] = field(default_factory=list)
    connect_instance_arn: str = ""

    def outputs(self) -> dict[str, str]:
        values = {
            "BridgeFunctionName": self.function,
            "ServiceNowInstanceUrl": self.servicenow_url,
            "ServiceNowSecret": self.secret_arn,
            "ContactTableName": self.table,
            "ParkingQueueUrl": self.parking_queue_url,
            "StreamFailureQueueUrl": self.failure_queue_url,
            "SegmentStream": self.stream_arn,
            "AlarmNames": ",".join(self.alarm_names),
        }
        if self.connect_instance_arn:
            values["ConnectInstance"] = self.connect_instance_arn
        return values


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def deploy_fake_stack(
    servicenow_url: str,
    secret: dict[str, str] | None = None,
    name: str = STACK,
    connect_instance_arn: str = "",
    as_outputs: bool = True,
) -> FakeStack:
    """The resources of a deployed voicebridge stack, and a CloudFormation stack naming them: in its outputs (as
    template.yaml's), or (``as_outputs=False``) only in its parameters, as a stack deployed before those outputs."""
    secrets = boto3.client("secretsmanager")
    secret_arn = secrets.create_secret(Name=f"{name}/servicenow", SecretString=json.dumps(secret or BASIC))["ARN"]
    kinesis = boto3.client("kinesis")
    stream_arns = []
    for stream in (f"{name}-segments", f"{name}-other"):
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        stream_arns.append(kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"])
    sqs = boto3.client("sqs")
    parking = sqs.create_queue(QueueName=f"{name}-parking")["QueueUrl"]
    failure = sqs.create_queue(QueueName=f"{name}-failure")["QueueUrl"]
    failure_arn = sqs.get_queue_attributes(QueueUrl=failure, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    role = boto3.client("iam").create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]["Arn"]
    awslambda = boto3.client("lambda")
    function = f"{name}-bridge"
    awslambda.create_function(
        FunctionName=function,
        Runtime="python3.13",
        Role=role,
        Handler="handler.lambda_handler",
        Code={"ZipFile": _function_zip()},
    )
    mapping = awslambda.create_event_source_mapping(
        EventSourceArn=stream_arns[0],
        FunctionName=function,
        StartingPosition="LATEST",
        Enabled=True,
        DestinationConfig={"OnFailure": {"Destination": failure_arn}},
    )["UUID"]
    table = f"{name}-contacts"
    boto3.client("dynamodb").create_table(**contact_table_create_kwargs(table_name=table))
    cloudwatch = boto3.client("cloudwatch")
    alarm_names = [f"{name}-{suffix}" for suffix in ALARM_SUFFIXES]
    for alarm in alarm_names:
        cloudwatch.put_metric_alarm(
            AlarmName=alarm,
            Namespace="AWS/SQS",
            MetricName="ApproximateNumberOfMessagesVisible",
            Statistic="Maximum",
            Period=300,
            EvaluationPeriods=1,
            Threshold=0,
            ComparisonOperator="GreaterThanThreshold",
        )
    deployed = FakeStack(
        name=name,
        servicenow_url=servicenow_url,
        secret_arn=secret_arn,
        function=function,
        stream_arn=stream_arns[0],
        other_stream_arn=stream_arns[1],
        table=table,
        parking_queue_url=parking,
        failure_queue_url=failure,
        mapping_uuid=mapping,
        alarm_names=alarm_names,
        connect_instance_arn=connect_instance_arn,
    )
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},  # a template needs one resource
    }
    parameters = []
    if as_outputs:
        template["Outputs"] = {key: {"Value": value} for key, value in deployed.outputs().items()}
    else:  # the template parameters of the same values; the resources only by their own outputs
        values = {
            "ServiceNowUrl": servicenow_url,
            "ServiceNowSecretArn": secret_arn,
            "SegmentStreamArn": stream_arns[0],
        }
        template["Parameters"] = {key: {"Type": "String"} for key in values}
        parameters = [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]
        template["Outputs"] = {
            key: {"Value": value}
            for key, value in deployed.outputs().items()
            if key in ("BridgeFunctionName", "ContactTableName", "ParkingQueueUrl", "StreamFailureQueueUrl")
        }
    boto3.client("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(template), Parameters=parameters
    )
    return deployed


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with start_emulator(EmulatorOptions()) as running:
        yield running


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """``voicebridge smoke ARGV`` through the real CLI: (exit status, stdout lines, stderr)."""
    code = cli.main(["smoke", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def line(lines: list[str], name: str) -> str:
    (found,) = [text for text in lines if text[2:].startswith(f"{name}:")]
    return found


def probe_interactions(emulator: RunningEmulator) -> list[dict[str, str]]:
    return emulator.store.rows("interaction", f"client_session_idSTARTSWITH{smoke.PROBE_PREFIX}")


def connect_client(streams: list[str], instance_id: str = INSTANCE_ID) -> tuple[Any, Stubber]:
    client = boto3.client("connect")
    stubber = Stubber(client)
    stubber.add_response(
        "list_instance_storage_configs",
        {
            "StorageConfigs": [
                {"AssociationId": f"a{index}", "StorageType": "KINESIS_STREAM", "KinesisStreamConfig": {"StreamArn": s}}
                for index, s in enumerate(streams)
            ]
        },
        {"InstanceId": instance_id, "ResourceType": smoke.REAL_TIME_SEGMENTS},
    )
    stubber.activate()
    return client, stubber


def run_with_connect(capsys: pytest.CaptureFixture[str], connect: Any, *argv: str) -> tuple[int, list[str], str]:
    parser = cli.build_parser(["smoke"])
    args = parser.parse_args(["smoke", *argv])
    clients = smoke.Clients.from_environment()
    clients.connect = connect
    code = smoke.run(args, clients=clients)
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


# -- everything in place ----------------------------------------------------------------------------------------


def test_a_healthy_stack_passes_every_check_and_leaves_one_closed_probe(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    arn = f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}"
    deployed = deploy_fake_stack(emulator.url, connect_instance_arn=arn)
    connect, stubber = connect_client([deployed.other_stream_arn, deployed.stream_arn])

    code, lines, err = run_with_connect(capsys, connect, "--stack", STACK)

    assert code == 0, lines
    assert err == ""
    checks = lines[1:-1]
    assert len(checks) == 11 and all(text.startswith("✓ ") for text in checks), lines
    assert lines[-1] == "smoke: 11 passed, 0 failed, 0 not checked"
    assert line(lines, "stack") == f"✓ stack: {STACK} is CREATE_COMPLETE"
    assert "basic auth (username, password)" in line(lines, "secret")
    assert f"mapping {deployed.mapping_uuid} Enabled on {STACK}-segments" in line(lines, "event source mapping")
    assert "5 exist (5 without actions: set AlarmTopicArn to be notified)" in line(lines, "alarms")
    stubber.assert_no_pending_responses()
    (probe,) = probe_interactions(emulator)
    assert probe["state"] == "closed_complete"
    assert probe["client_session_id"] in line(lines, "voice interaction API")
    (message,) = emulator.store.rows("sys_cs_message", f"conversation={probe['channel_metadata_document']}")
    assert message["is_internal"] == "true"  # an agent-only note


def test_oauth_client_credentials_pass(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_fake_stack(emulator.url, secret=OAUTH)

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 0, lines
    assert "OAuth client credentials (client_id, client_secret)" in line(lines, "secret")
    assert "(OAuth token)" in line(lines, "ServiceNow credentials")
    assert line(lines, "Connect real-time segments").startswith("– ")  # no instance: not checked, not failed


def test_read_only_creates_nothing(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_fake_stack(emulator.url)

    code, lines, _ = run_cli(capsys, "--stack", STACK, "--read-only")

    assert code == 0, lines
    assert line(lines, "voice interaction API").startswith("– ")
    assert "row-level ACLs are not proven" in line(lines, "Table API read")
    assert emulator.store.rows("interaction") == []


def test_a_stack_from_before_the_smoke_outputs_is_read_from_its_parameters(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed = deploy_fake_stack(emulator.url, as_outputs=False)

    code, lines, _ = run_cli(capsys, "--stack", STACK, "--alarms", ",".join(deployed.alarm_names))

    assert code == 0, lines
    assert deployed.secret_arn in line(lines, "secret")
    assert f"Enabled on {STACK}-segments" in line(lines, "event source mapping")


def test_explicit_resources_without_a_stack(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed = deploy_fake_stack(emulator.url)

    code, lines, _ = run_cli(
        capsys,
        "--servicenow-url",
        emulator.url,
        "--secret-arn",
        deployed.secret_arn,
        "--function",
        deployed.function,
        "--stream-arn",
        deployed.stream_arn,
        "--parking-queue",
        deployed.parking_queue_url,
    )

    assert code == 0, lines
    assert lines[0] == "voicebridge smoke: explicit resources"
    assert line(lines, "alarms").startswith("– ") and line(lines, "on-failure queue").startswith("– ")
    assert line(lines, "parking queue") == "✓ parking queue: empty"


# -- one broken piece at a time ---------------------------------------------------------------------------------


def test_wrong_password(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_fake_stack(emulator.url, secret={"username": "admin", "password": "wrong"})

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    credentials = line(lines, "ServiceNow credentials")
    assert credentials.startswith("✗ ") and "401" in credentials and "fix the secret's credentials" in credentials
    assert line(lines, "voice interaction API").startswith("– ")
    assert emulator.store.rows("interaction") == []


def test_wrong_oauth_client_secret(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_fake_stack(emulator.url, secret={"client_id": "voicebridge", "client_secret": "wrong"})

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    assert "OAuth token refused: access_denied" in line(lines, "ServiceNow credentials")


def test_secret_without_a_password(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_fake_stack(emulator.url, secret={"username": "admin"})

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    secret = line(lines, "secret")
    assert secret.startswith("✗ ") and "must hold username and password" in secret and "put-secret-value" in secret
    assert "admin" not in secret  # names the keys, never a value
    assert (
        line(lines, "ServiceNow credentials")
        == "– ServiceNow credentials: not checked (not run: needs a readable secret)"
    )


def test_secret_that_does_not_exist(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deployed = deploy_fake_stack(emulator.url)
    boto3.client("secretsmanager").delete_secret(SecretId=deployed.secret_arn, ForceDeleteWithoutRecovery=True)

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    assert "ResourceNotFoundException" in line(lines, "secret")


def test_disabled_event_source_mapping(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed = deploy_fake_stack(emulator.url)
    boto3.client("lambda").update_event_source_mapping(UUID=deployed.mapping_uuid, Enabled=False)

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    mapping = line(lines, "event source mapping")
    assert mapping.startswith("✗ ") and "is Disabled" in mapping and "SegmentSourceEnabled=true" in mapping


def test_mapping_on_another_stream(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deployed = deploy_fake_stack(emulator.url)

    code, lines, _ = run_cli(capsys, "--stack", STACK, "--stream-arn", deployed.other_stream_arn)

    assert code == 1
    mapping = line(lines, "event source mapping")
    assert f"has no mapping on {deployed.other_stream_arn}" in mapping and deployed.stream_arn in mapping


@pytest.mark.parametrize(
    ("queue", "name", "advice"),
    [
        ("parking_queue_url", "parking queue", "redrive"),
        ("failure_queue_url", "on-failure queue", "voicebridge capture"),
    ],
)
def test_queue_that_holds_messages(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], queue: str, name: str, advice: str
) -> None:
    deployed = deploy_fake_stack(emulator.url)
    for index in range(2):
        boto3.client("sqs").send_message(QueueUrl=getattr(deployed, queue), MessageBody=json.dumps({"n": index}))

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    found = line(lines, name)
    assert found.startswith("✗ ") and "holds 2 message(s)" in found and advice in found


@pytest.mark.parametrize("table", ["interaction", "sys_cs_conversation", "sys_cs_message"])
def test_forbidden_table_api_read(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], table: str
) -> None:
    deploy_fake_stack(emulator.url)
    emulator.add_fault_rules(
        [{"method": "GET", "path": f"/api/now/table/{table}$", "action": "status", "status": 403, "times": 10}]
    )

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    assert line(lines, "ServiceNow credentials").startswith("✓ ")  # a 403 is an authenticated answer
    assert line(lines, "voice interaction API").startswith("✓ ")
    read = line(lines, "Table API read")
    assert read.startswith("✗ ") and f"403 on {table}" in read and "grant the ServiceNow user read" in read
    (probe,) = probe_interactions(emulator)
    assert probe["state"] == "closed_complete"  # the probe is closed even when a read fails


def test_user_without_the_integration_role(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_fake_stack(emulator.url)
    emulator.add_fault_rules(
        [{"method": "POST", "path": "/cs/voice-interactions$", "action": "status", "status": 403, "times": 10}]
    )

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    write = line(lines, "voice interaction API")
    assert write.startswith("✗ ") and "403" in write and "interaction_integration_user" in write


def test_servicenow_unreachable(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deploy_fake_stack(closed)

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    credentials = line(lines, "ServiceNow credentials")
    assert "connection refused" in credentials and "egress" in credentials


def test_missing_alarm(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deployed = deploy_fake_stack(emulator.url)
    boto3.client("cloudwatch").delete_alarms(AlarmNames=[deployed.alarm_names[0]])

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    assert line(lines, "alarms") == (
        f"✗ alarms: missing: {deployed.alarm_names[0]} — redeploy the stack (the template creates them)"
    )


@pytest.mark.parametrize("streams", [[], ["other"]])
def test_connect_not_streaming_to_the_stack(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], streams: list[str]
) -> None:
    deployed = deploy_fake_stack(
        emulator.url, connect_instance_arn=f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}"
    )
    connect, _ = connect_client([deployed.other_stream_arn] if streams else [])

    code, lines, _ = run_with_connect(capsys, connect, "--stack", STACK)

    assert code == 1
    found = line(lines, "Connect real-time segments")
    assert found.startswith("✗ ") and "associate-instance-storage-config" in found
    if streams:
        assert deployed.other_stream_arn in found and "point SegmentStreamArn at that stream" in found
    else:
        assert "streams no real-time voice segments" in found


def test_connect_access_denied(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_fake_stack(emulator.url)
    connect = boto3.client("connect")
    stubber = Stubber(connect)
    stubber.add_client_error("list_instance_storage_configs", "AccessDeniedException", "not allowed")
    stubber.activate()

    code, lines, _ = run_with_connect(capsys, connect, "--stack", STACK, "--connect-instance-id", INSTANCE_ID)

    assert code == 1
    assert "allow connect:ListInstanceStorageConfigs" in line(lines, "Connect real-time segments")


# -- bad arguments: one line on stderr, exit 2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "pass --stack NAME, or the resources to check"),
        (("--stack", "no-such-stack"), "stack 'no-such-stack'"),
        (("--servicenow-url", "http://example.service-now.com"), "--servicenow-url must be an https:// URL"),
        (("--connect-instance-id", "nope"), "not an Amazon Connect instance id or ARN"),
        (("--stream-arn", "arn:aws:kinesis:us-east-1:123456789012:*"), "not a Kinesis stream ARN"),
    ],
)
def test_bad_arguments(aws: None, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str) -> None:
    code, lines, err = run_cli(capsys, *argv)

    assert code == 2
    assert lines == []
    assert err.count("\n") == 1 and err.startswith("voicebridge smoke: ") and message in err


def test_mapping_that_reports_a_problem(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto never reports a processing problem: Lambda's own answer is stubbed.
    deployed = deploy_fake_stack(emulator.url)
    awslambda = boto3.client("lambda")
    stubber = Stubber(awslambda)
    problem = "PROBLEM: Function call failed"
    stubber.add_response(
        "list_event_source_mappings",
        {
            "EventSourceMappings": [
                {
                    "UUID": deployed.mapping_uuid,
                    "EventSourceArn": deployed.stream_arn,
                    "State": "Enabled",
                    "LastProcessingResult": problem,
                }
            ]
        },
        {"FunctionName": deployed.function},
    )
    stubber.activate()
    args = cli.build_parser(["smoke"]).parse_args(["smoke", "--stack", STACK])
    clients = smoke.Clients.from_environment()
    clients.lambda_ = awslambda

    code = smoke.run(args, clients=clients)

    assert code == 1
    mapping = line(capsys.readouterr().out.splitlines(), "event source mapping")
    assert mapping.startswith("✗ ") and f"reports {problem}" in mapping


def test_rows_hidden_by_an_acl_fail_the_probe_but_not_a_read_only_run(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real instance answers 200 with no rows where a read ACL hides them: only the probe's own row shows it.
    with start_emulator(EmulatorOptions(filtered_reads=("sys_cs_message",))) as filtering:
        deploy_fake_stack(filtering.url)

        code, lines, _ = run_cli(capsys, "--stack", STACK)
        read_only_code, read_only_lines, _ = run_cli(capsys, "--stack", STACK, "--read-only")

    assert code == 1
    read = line(lines, "Table API read")
    assert read.startswith("✗ ") and "not visible in sys_cs_message (200 with no rows" in read
    assert read_only_code == 0  # the documented limit of --read-only
    assert "row-level ACLs are not proven" in line(read_only_lines, "Table API read")


def test_probe_that_cannot_be_closed(aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_fake_stack(emulator.url)
    emulator.add_fault_rules([{"method": "PATCH", "path": "/state$", "action": "status", "status": 403, "times": 10}])

    code, lines, _ = run_cli(capsys, "--stack", STACK)

    assert code == 1
    write = line(lines, "voice interaction API")
    assert write.startswith("✗ ") and "close_interaction: 403" in write and "by hand" in write
    assert line(lines, "Table API read").startswith("✓ ")


@pytest.mark.parametrize(
    ("status", "advice"),
    [("UPDATE_ROLLBACK_COMPLETE", "describe-stack-events"), ("UPDATE_IN_PROGRESS", "wait for the deployment")],
)
def test_stack_whose_last_deployment_did_not_apply(
    aws: None, emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], status: str, advice: str
) -> None:
    # moto's stacks are always complete: CloudFormation's answer is stubbed, the rest is moto and the emulator.
    deployed = deploy_fake_stack(emulator.url)
    cloudformation = boto3.client("cloudformation")
    stubber = Stubber(cloudformation)
    stubber.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": STACK,
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "StackStatus": status,
                    "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in deployed.outputs().items()],
                }
            ]
        },
        {"StackName": STACK},
    )
    stubber.activate()
    args = cli.build_parser(["smoke"]).parse_args(["smoke", "--stack", STACK])
    clients = smoke.Clients.from_environment()
    clients.cloudformation = cloudformation

    code = smoke.run(args, clients=clients)

    assert code == 1
    found = line(capsys.readouterr().out.splitlines(), "stack")
    assert found.startswith(f"✗ stack: {STACK} is {status}") and advice in found
