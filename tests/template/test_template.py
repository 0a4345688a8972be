"""Properties of template.yaml (and samconfig.toml) that neither cfn-lint nor `sam validate --lint` checks."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from voicebridge.template import (
    TEMPLATE_PATH,
    TemplateError,
    contact_table_create_kwargs,
    contact_table_ttl_attribute,
    load_template,
    loads_template,
)

pytestmark = pytest.mark.unit

REPO = TEMPLATE_PATH.parent
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
# AWSLambdaVPCAccessExecutionRole's EC2 actions: only when the functions run in a VPC (condition HasVpc).
VPC_ENI_ACTIONS = {
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}

# Environment variable -> the parameter (or resource) it is set from.
ENVIRONMENT = {
    "SERVICENOW_URL": {"Ref": "ServiceNowUrl"},
    "SERVICENOW_SECRET_ARN": {"Ref": "ServiceNowSecretArn"},
    "CONTACT_TABLE": {"Ref": "ContactTable"},
    "PARKING_QUEUE_URL": {"Ref": "ParkingQueue"},
    "RECORDING_URL_TEMPLATE": {"Ref": "RecordingUrlTemplate"},
    "CONNECT_INSTANCE_ALIAS": {"Ref": "ConnectInstanceAlias"},
    "CALLER_LOOKUP": {"Ref": "CallerLookup"},
    "CALLER_ATTRIBUTE": {"Ref": "CallerAttribute"},
    "FALLBACK_USER_ID": {"Ref": "FallbackUserId"},
    "AGENT_LOOKUP": {"Ref": "AgentLookup"},
    "AGENT_ID_FORMAT": {"Ref": "AgentIdFormat"},
    "AGENT_ID_ATTRIBUTE": {"Ref": "AgentIdAttribute"},
    "INBOUND_ID": {"Ref": "InboundId"},
    "FORWARD_NOTES": {"Ref": "ForwardNotes"},
    "REDACT_CONTENT": {"Ref": "RedactContent"},
    "MAX_WORKERS": {"Ref": "MaxWorkers"},
    "CONTACT_TTL_DAYS": {"Ref": "ContactTtlDays"},
    "POWERTOOLS_SERVICE_NAME": "voicebridge",
    "POWERTOOLS_METRICS_NAMESPACE": "voicebridge",
    "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    "VOICEBRIDGE_XRAY_SDK": {"Ref": "EnableXRaySdk"},
}

# Parameter -> (default, allowed values or None), as the bridge code expects them.
PARAMETER_DEFAULTS: dict[str, tuple[str | int | None, list[str] | None]] = {
    "ServiceNowUrl": (None, None),
    "ServiceNowSecretArn": (None, None),
    "SegmentStreamArn": (None, None),
    "ConnectInstanceArn": ("", None),
    "ConnectInstanceAlias": ("", None),
    "RecordingUrlTemplate": (
        "https://{instance_alias}.my.connect.aws/contact-trace-records/details/{contact_id}",
        None,
    ),
    "CallerLookup": ("describe_contact", ["describe_contact", "attribute", "none"]),
    "CallerAttribute": ("CallerNumber", None),
    "FallbackUserId": ("anonymous", None),
    "AgentLookup": ("describe_user", ["describe_user", "none"]),
    "AgentIdFormat": ("as_is", ["as_is", "strip_domain", "attribute"]),
    "AgentIdAttribute": ("ServiceNowAgentId", None),
    "InboundId": ("", None),
    "ForwardNotes": ("true", ["true", "false"]),
    "RedactContent": ("none", ["none", "pci", "pii"]),
    "MaxWorkers": (64, None),
    "ContactTtlDays": (7, None),
    "LogLevel": ("INFO", None),
    "EnableXRaySdk": ("false", ["true", "false"]),
    "MemorySize": (512, None),
    "Timeout": (120, None),
    "LogRetentionInDays": (30, None),
    "StartingPosition": ("LATEST", ["LATEST", "TRIM_HORIZON"]),
    "BatchSize": (100, None),
    "MaximumBatchingWindowInSeconds": (0, None),
    "ParallelizationFactor": (1, None),
    "BisectBatchOnFunctionError": ("true", ["true", "false"]),
    "MaximumRetryAttempts": (40, None),
    "MaximumRecordAgeInSeconds": (21600, None),
}

# Event source mapping property -> the parameter that sets it.
EVENT_SOURCE_KNOBS = {
    "Stream": "SegmentStreamArn",
    "Enabled": "SegmentSourceEnabled",
    "StartingPosition": "StartingPosition",
    "BatchSize": "BatchSize",
    "MaximumBatchingWindowInSeconds": "MaximumBatchingWindowInSeconds",
    "ParallelizationFactor": "ParallelizationFactor",
    "BisectBatchOnFunctionError": "BisectBatchOnFunctionError",
    "MaximumRetryAttempts": "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds": "MaximumRecordAgeInSeconds",
}


# --- helpers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _resource(template: dict[str, Any], logical_id: str, type_: str) -> dict[str, Any]:
    resource = template["Resources"][logical_id]
    assert resource["Type"] == type_
    props: dict[str, Any] = resource["Properties"]
    return props


def _function(template: dict[str, Any]) -> dict[str, Any]:
    return _resource(template, "BridgeFunction", "AWS::Serverless::Function")


def _event_source(template: dict[str, Any]) -> dict[str, Any]:
    event = _function(template)["Events"]["Segments"]
    assert event["Type"] == "Kinesis"
    props: dict[str, Any] = event["Properties"]
    return props


def _statements(template: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    """(condition or None, statement) for every statement of the function role's inline policies."""
    found: list[tuple[str | None, dict[str, Any]]] = []
    for policy in _resource(template, "BridgeFunctionRole", "AWS::IAM::Role")["Policies"]:
        for item in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in item:
                condition, when_true, when_false = item["Fn::If"]
                assert when_false == {"Ref": "AWS::NoValue"}, "a conditional statement must vanish when false"
                found.append((condition, when_true))
            else:
                found.append((None, item))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _referenced_names(value: Any) -> set[str]:
    """Names of parameters/resources a value refers to through Ref, GetAtt or Sub."""
    names: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            names.add(value["Ref"])
        elif "Fn::GetAtt" in value:
            names.add(value["Fn::GetAtt"][0])
        elif "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            names.update(m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text))
        else:
            for item in value.values():
                names |= _referenced_names(item)
    elif isinstance(value, list):
        for item in value:
            names |= _referenced_names(item)
    return names


def _statement_by_sid(template: dict[str, Any], sid: str) -> tuple[str | None, dict[str, Any]]:
    matches = [(cond, st) for cond, st in _statements(template) if st.get("Sid") == sid]
    assert len(matches) == 1, sid
    return matches[0]


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


# --- the loader --------------------------------------------------------------------------------------


def test_loader_maps_every_short_tag_to_its_long_form(tmp_path: Path) -> None:
    # Given a template using every CloudFormation short tag
    path = tmp_path / "t.yaml"
    path.write_text(
        """
A: !Ref Thing
B: !GetAtt Queue.Arn
C: !GetAtt [Queue, Arn]
D: !Sub "${AWS::StackName}-x"
E: !If [Cond, !Ref X, !Ref AWS::NoValue]
F: !Equals [!Ref P, ""]
G: !Not [!Condition C1]
H: !And [!Condition C1, !Condition C2]
I: !Or [!Condition C1, !Condition C2]
J: !Select [0, !GetAZs ""]
K: !Split [",", "a,b"]
L: !Join ["", [a, !Ref B]]
M: !FindInMap [Map, Key, Value]
N: !ImportValue Exported
O: !GetAZs
P: !GetAtt Db.Endpoint.Address
Q: !Sub ["${A}", {A: !Ref X}]
""",
        encoding="utf-8",
    )
    # When it is loaded
    doc = load_template(path)
    # Then each tag has CloudFormation's long form
    assert doc["A"] == {"Ref": "Thing"}
    assert doc["B"] == doc["C"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert doc["D"] == {"Fn::Sub": "${AWS::StackName}-x"}
    assert doc["E"] == {"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]}
    assert doc["F"] == {"Fn::Equals": [{"Ref": "P"}, ""]}
    assert doc["G"] == {"Fn::Not": [{"Condition": "C1"}]}
    assert doc["H"] == {"Fn::And": [{"Condition": "C1"}, {"Condition": "C2"}]}
    assert doc["I"] == {"Fn::Or": [{"Condition": "C1"}, {"Condition": "C2"}]}
    assert doc["J"] == {"Fn::Select": [0, {"Fn::GetAZs": ""}]}
    assert doc["K"] == {"Fn::Split": [",", "a,b"]}
    assert doc["L"] == {"Fn::Join": ["", ["a", {"Ref": "B"}]]}
    assert doc["M"] == {"Fn::FindInMap": ["Map", "Key", "Value"]}
    assert doc["N"] == {"Fn::ImportValue": "Exported"}
    assert doc["O"] == {"Fn::GetAZs": ""}
    assert doc["P"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert doc["Q"] == {"Fn::Sub": ["${A}", {"A": {"Ref": "X"}}]}


def test_loader_rejects_a_document_that_is_not_a_mapping() -> None:
    with pytest.raises(TemplateError):
        loads_template("- just\n- a list\n")


def test_create_kwargs_refuse_an_intrinsic_in_the_key_schema() -> None:
    doc = loads_template(
        """
Resources:
  ContactTable:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{AttributeName: !Ref Key, AttributeType: S}]
      KeySchema: [{AttributeName: !Ref Key, KeyType: HASH}]
"""
    )
    with pytest.raises(TemplateError, match="intrinsic"):
        contact_table_create_kwargs(doc)


# --- function ----------------------------------------------------------------------------------------


def test_function_runtime_architecture_handler_and_layer(template: dict[str, Any]) -> None:
    fn = _function(template)
    assert fn["Runtime"] == "python3.13"
    assert fn["Architectures"] == ["arm64"]
    assert fn["CodeUri"] == "functions/bridge/"
    assert fn["Handler"] == "bridge.handler.lambda_handler"
    assert fn["Tracing"] == "Active"
    assert fn["MemorySize"] == {"Ref": "MemorySize"}
    assert fn["Timeout"] == {"Ref": "Timeout"}
    assert fn["Layers"] == [{"Ref": "RuntimeDependenciesLayer"}]

    layer = template["Resources"]["RuntimeDependenciesLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/runtime/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}


def test_every_environment_variable_comes_from_its_parameter(template: dict[str, Any]) -> None:
    variables = _function(template)["Environment"]["Variables"]
    assert variables == ENVIRONMENT


@pytest.mark.parametrize(("name", "expected"), PARAMETER_DEFAULTS.items())
def test_parameter_defaults_and_allowed_values(template: dict[str, Any], name: str, expected: tuple[Any, Any]) -> None:
    default, allowed = expected
    parameter = template["Parameters"][name]
    assert parameter.get("Default") == default
    if allowed is not None:
        assert parameter["AllowedValues"] == allowed


def test_every_parameter_default_satisfies_its_own_constraints(template: dict[str, Any]) -> None:
    # CloudFormation checks a default only at deploy time: a bad one fails there, not in the linters.
    for name, parameter in template["Parameters"].items():
        if "Default" not in parameter:
            continue
        default = parameter["Default"]
        if "AllowedValues" in parameter:
            assert str(default) in [str(v) for v in parameter["AllowedValues"]], name
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], str(default)), name
        if "MinValue" in parameter:
            assert parameter["MinValue"] <= default <= parameter["MaxValue"], name


def test_every_parameter_is_used(template: dict[str, Any]) -> None:
    used = _referenced_names({k: v for k, v in template.items() if k != "Parameters"})
    assert set(template["Parameters"]) <= used


@pytest.mark.parametrize(
    ("parameter", "good", "bad"),
    [
        ("ServiceNowUrl", "https://example.service-now.com", "http://example.service-now.com"),
        (
            "ServiceNowSecretArn",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:voicebridge/servicenow-AbC123",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:voicebridge/servicenow",
        ),
        (
            "SegmentStreamArn",
            "arn:aws:kinesis:eu-west-1:123456789012:stream/connect-contact-lens",
            "arn:aws:kinesis:eu-west-1:123456789012:*",
        ),
        (
            "ConnectInstanceArn",
            "arn:aws:connect:eu-west-1:123456789012:instance/0c3fd1a6-26ad-4c2e-9a1b-0a6e1ab8bd39",
            "arn:aws:connect:eu-west-1:123456789012:instance/*",
        ),
    ],
)
def test_required_arns_and_urls_are_validated(template: dict[str, Any], parameter: str, good: str, bad: str) -> None:
    # CloudFormation matches AllowedPattern against the whole value; a wildcard must never get through.
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    assert re.fullmatch(pattern, good)
    assert not re.fullmatch(pattern, bad)


def test_servicenow_url_is_the_instance_root(template: dict[str, Any]) -> None:
    # The bridge rejects a path or query at runtime; reject it at deploy time already.
    pattern = template["Parameters"]["ServiceNowUrl"]["AllowedPattern"]
    assert re.fullmatch(pattern, "https://example.service-now.com/")
    for bad in ("https://example.service-now.com/api/now", "https://x.service-now.com?x=1", "https://", ""):
        assert not re.fullmatch(pattern, bad), bad


def test_connect_lookups_require_an_instance(template: dict[str, Any]) -> None:
    rule = template["Rules"]["ConnectLookupsNeedInstance"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ConnectInstanceArn"}, ""]}
    asserts = [a["Assert"] for a in rule["Assertions"]]
    assert {"Fn::Equals": [{"Ref": "CallerLookup"}, "none"]} in asserts
    assert {"Fn::Equals": [{"Ref": "AgentLookup"}, "none"]} in asserts


def test_the_default_recording_url_cannot_be_deployed_without_the_alias(template: dict[str, Any]) -> None:
    """Issue 10 §3: a setting that would park every batch at run time is refused at deploy time instead."""
    from bridge.config import DEFAULT_RECORDING_URL_TEMPLATE, ConfigurationError, load_settings

    default = template["Parameters"]["RecordingUrlTemplate"]["Default"]
    assert default == DEFAULT_RECORDING_URL_TEMPLATE
    rule = template["Rules"]["DefaultRecordingUrlNeedsAlias"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "RecordingUrlTemplate"}, default]}
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ConnectInstanceAlias"}, ""]}]}
    environment = {"SERVICENOW_URL": "https://x.service-now.com", "SERVICENOW_SECRET_ARN": "arn", "CONTACT_TABLE": "t"}
    with pytest.raises(ConfigurationError, match="CONNECT_INSTANCE_ALIAS"):  # what the rule spares the deployment
        load_settings({**environment, "PARKING_QUEUE_URL": "q", "RECORDING_URL_TEMPLATE": default})


# --- Kinesis event source mapping ----------------------------------------------------------------------


def test_event_source_knobs_are_wired_to_parameters(template: dict[str, Any]) -> None:
    props = _event_source(template)
    for prop, parameter in EVENT_SOURCE_KNOBS.items():
        assert props[prop] == {"Ref": parameter}, prop
        assert parameter in template["Parameters"]


def test_starting_position_allows_only_what_lambda_accepts_for_kinesis_here(template: dict[str, Any]) -> None:
    # Neither linter catches an invalid StartingPosition.
    parameter = template["Parameters"]["StartingPosition"]
    assert parameter["AllowedValues"] == ["LATEST", "TRIM_HORIZON"]
    assert parameter["Default"] == "LATEST"


def test_retries_and_record_age_are_bounded(template: dict[str, Any]) -> None:
    # Lambda's default -1 (infinite) lets one poison record block a shard for the stream's whole retention.
    retries = template["Parameters"]["MaximumRetryAttempts"]
    age = template["Parameters"]["MaximumRecordAgeInSeconds"]
    assert retries["Type"] == age["Type"] == "Number"
    assert 0 <= retries["MinValue"] <= retries["Default"] <= retries["MaxValue"] <= 10000
    assert retries["Default"] == 40
    assert 60 <= age["MinValue"] <= age["Default"] <= age["MaxValue"] <= 604800
    assert age["Default"] == 21600


def test_bisect_partial_batch_response_and_on_failure_destination(template: dict[str, Any]) -> None:
    props = _event_source(template)
    assert template["Parameters"]["BisectBatchOnFunctionError"]["Default"] == "true"
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    on_failure = props["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert on_failure["Destination"] == {"Fn::GetAtt": ["StreamFailureQueue", "Arn"]}


def test_batching_knob_ranges(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert (params["BatchSize"]["MinValue"], params["BatchSize"]["MaxValue"]) == (1, 10000)
    assert (params["ParallelizationFactor"]["MinValue"], params["ParallelizationFactor"]["MaxValue"]) == (1, 10)
    window = params["MaximumBatchingWindowInSeconds"]
    assert (window["MinValue"], window["MaxValue"]) == (0, 300)


# --- IAM -------------------------------------------------------------------------------------------------


def test_function_uses_only_the_explicit_role(template: dict[str, Any]) -> None:
    # SAM would otherwise generate a role with AWSLambdaKinesisExecutionRole (Resource "*").
    fn = _function(template)
    assert fn["Role"] == {"Fn::GetAtt": ["BridgeFunctionRole", "Arn"]}
    assert "Policies" not in fn
    role = _resource(template, "BridgeFunctionRole", "AWS::IAM::Role")
    assert "ManagedPolicyArns" not in role
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"


def test_no_wildcard_actions_and_no_wildcard_resources_except_xray(template: dict[str, Any]) -> None:
    for condition, statement in _statements(template):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        actions = _as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{statement['Sid']}: {action}"
        for resource in _as_list(statement["Resource"]):
            if resource == "*" and condition == "HasVpc":
                # Network interfaces of a function in a VPC, as AWSLambdaVPCAccessExecutionRole grants them.
                assert set(actions) == VPC_ENI_ACTIONS, statement["Sid"]
            elif resource == "*":
                # X-Ray write actions support no resource-level permissions.
                assert set(actions) <= XRAY_ACTIONS, statement["Sid"]
            else:
                # Every other resource is an ARN built from a parameter or a resource of this stack.
                assert isinstance(resource, dict), f"{statement['Sid']}: literal resource {resource!r}"
                assert _referenced_names(resource), statement["Sid"]


@pytest.mark.parametrize(
    ("sid", "condition", "actions", "referenced"),
    [
        (
            "ReadSegmentStream",
            None,
            {
                "kinesis:DescribeStream",
                "kinesis:DescribeStreamSummary",
                "kinesis:GetRecords",
                "kinesis:GetShardIterator",
                "kinesis:ListShards",
            },
            {"SegmentStreamArn"},
        ),
        (
            "ContactState",
            None,
            {"dynamodb:BatchGetItem", "dynamodb:PutItem"},  # measured: test_iam_least_privilege.py
            {"ContactTable"},
        ),
        ("SendToQueues", None, {"sqs:SendMessage"}, {"ParkingQueue", "StreamFailureQueue"}),
        ("ReadServiceNowSecret", None, {"secretsmanager:GetSecretValue"}, {"ServiceNowSecretArn"}),
        (
            "ConnectContacts",
            "HasConnectInstance",
            {"connect:DescribeContact", "connect:GetContactAttributes"},
            {"ConnectInstanceArn"},
        ),
        ("ConnectUsers", "HasConnectInstance", {"connect:DescribeUser"}, {"ConnectInstanceArn"}),
        ("WriteOwnLogs", None, {"logs:CreateLogStream", "logs:PutLogEvents"}, {"BridgeLogGroup"}),
        ("DecryptSegmentStream", "HasStreamKmsKey", {"kms:Decrypt"}, {"SegmentStreamKmsKeyArn"}),
        ("DecryptServiceNowSecret", "HasSecretKmsKey", {"kms:Decrypt"}, {"ServiceNowSecretKmsKeyArn"}),
    ],
)
def test_each_statement_is_scoped_to_its_resource(
    template: dict[str, Any], sid: str, condition: str | None, actions: set[str], referenced: set[str]
) -> None:
    found_condition, statement = _statement_by_sid(template, sid)
    assert found_condition == condition
    assert set(_as_list(statement["Action"])) == actions
    assert _referenced_names(statement["Resource"]) == referenced


def test_connect_statements_are_limited_to_contacts_and_agents_of_the_instance(template: dict[str, Any]) -> None:
    assert _statement_by_sid(template, "ConnectContacts")[1]["Resource"] == {
        "Fn::Sub": "${ConnectInstanceArn}/contact/*"
    }
    assert _statement_by_sid(template, "ConnectUsers")[1]["Resource"] == {"Fn::Sub": "${ConnectInstanceArn}/agent/*"}
    assert template["Conditions"]["HasConnectInstance"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ConnectInstanceArn"}, ""]}]
    }


def test_kms_decrypt_only_through_the_owning_service(template: dict[str, Any]) -> None:
    for sid, service in (("DecryptSegmentStream", "kinesis"), ("DecryptServiceNowSecret", "secretsmanager")):
        _, statement = _statement_by_sid(template, sid)
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": {"Fn::Sub": f"{service}.${{AWS::Region}}.amazonaws.com"}}
        }


def test_no_log_group_creation_and_no_metrics_api(template: dict[str, Any]) -> None:
    actions = {action for _, st in _statements(template) for action in _as_list(st["Action"])}
    assert "logs:CreateLogGroup" not in actions  # the group is ours, with retention
    assert "cloudwatch:PutMetricData" not in actions  # metrics are EMF log lines


def test_xray_statement_is_exactly_the_write_actions(template: dict[str, Any]) -> None:
    _, statement = _statement_by_sid(template, "XRayWrite")
    assert set(statement["Action"]) == XRAY_ACTIONS
    assert statement["Resource"] == "*"


# --- storage and logs ---------------------------------------------------------------------------------


def test_contact_table_schema_ttl_pitr_sse(template: dict[str, Any]) -> None:
    table = _resource(template, "ContactTable", "AWS::DynamoDB::Table")
    assert table["KeySchema"] == [{"AttributeName": "contact_id", "KeyType": "HASH"}]
    # contact_id keys the table; open_shard/active_bucket only key the sweeper's sparse open-idle index
    assert table["AttributeDefinitions"] == [
        {"AttributeName": "contact_id", "AttributeType": "S"},
        {"AttributeName": "open_shard", "AttributeType": "S"},
        {"AttributeName": "active_bucket", "AttributeType": "N"},
    ]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["DeletionProtectionEnabled"] == {"Ref": "TableDeletionProtection"}
    assert template["Parameters"]["TableDeletionProtection"]["Default"] == "true"


@pytest.mark.parametrize("queue", ["ParkingQueue", "StreamFailureQueue"])
def test_queues_are_encrypted_and_keep_messages_14_days(template: dict[str, Any], queue: str) -> None:
    props = _resource(template, queue, "AWS::SQS::Queue")
    assert props["SqsManagedSseEnabled"] is True
    assert props["MessageRetentionPeriod"] == 1209600
    assert 30 <= props["VisibilityTimeout"] <= 43200


def test_log_group_is_explicit_with_retention_and_used_by_the_function(template: dict[str, Any]) -> None:
    group = _resource(template, "BridgeLogGroup", "AWS::Logs::LogGroup")
    assert group["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert template["Parameters"]["LogRetentionInDays"]["Default"] == 30
    fn = _function(template)
    assert fn["LoggingConfig"]["LogGroup"] == {"Ref": "BridgeLogGroup"}
    # The group carries the name Lambda would have used for the named function.
    assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-bridge"}
    assert fn["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-bridge"}


def test_outputs(template: dict[str, Any]) -> None:
    outputs = {name: output["Value"] for name, output in template["Outputs"].items()}
    assert outputs == {
        "BridgeFunctionName": {"Ref": "BridgeFunction"},
        "BridgeFunctionArn": {"Fn::GetAtt": ["BridgeFunction", "Arn"]},
        "ContactTableName": {"Ref": "ContactTable"},
        "ParkingQueueUrl": {"Ref": "ParkingQueue"},
        "StreamFailureQueueUrl": {"Ref": "StreamFailureQueue"},
        "BridgeLogGroupName": {"Ref": "BridgeLogGroup"},
        "SweeperFunctionName": {"Ref": "SweeperFunction"},
        "ContactTimelineQueryId": {"Ref": "ContactTimelineQuery"},
        "OperationsDashboardName": {"Ref": "OperationsDashboard"},
        # read by `voicebridge smoke --stack` (tests/template/test_deploy_template.py)
        "ServiceNowInstanceUrl": {"Ref": "ServiceNowUrl"},
        "ServiceNowSecret": {"Ref": "ServiceNowSecretArn"},
        "SegmentStream": {"Ref": "SegmentStreamArn"},
        "ConnectInstance": {"Ref": "ConnectInstanceArn"},
        "AlarmNames": template["Outputs"]["AlarmNames"]["Value"],
        "OperationsDashboardUrl": {
            "Fn::Sub": "https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}"
            "#dashboards:name=${OperationsDashboard}"
        },
    }


def test_no_resource_creates_or_associates_the_segment_stream(template: dict[str, Any]) -> None:
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert "AWS::Kinesis::Stream" not in types
    assert "AWS::Connect::InstanceStorageConfig" not in types


# --- contact table schema shared with tests and replay ----------------------------------------------------


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)


def test_contact_table_kwargs_create_the_template_table_in_moto(aws_credentials: None) -> None:
    # Given the kwargs derived from the template
    kwargs = contact_table_create_kwargs(table_name="contacts-under-test")
    ttl_attribute = contact_table_ttl_attribute()
    assert ttl_attribute == "expires_at"
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        # When the table is created (and TTL enabled the way CloudFormation does)
        client.create_table(**kwargs)
        client.update_time_to_live(
            TableName="contacts-under-test",
            TimeToLiveSpecification={"AttributeName": ttl_attribute, "Enabled": True},
        )
        # Then it has the template's key, billing mode and TTL, and takes a contact item
        table = client.describe_table(TableName="contacts-under-test")["Table"]
        assert table["KeySchema"] == [{"AttributeName": "contact_id", "KeyType": "HASH"}]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = client.describe_time_to_live(TableName="contacts-under-test")["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
        client.put_item(
            TableName="contacts-under-test",
            Item={"contact_id": {"S": "c-1"}, ttl_attribute: {"N": "1900000000"}},
            ConditionExpression="attribute_not_exists(contact_id)",
        )
        assert client.get_item(TableName="contacts-under-test", Key={"contact_id": {"S": "c-1"}})["Item"]


def test_default_table_name_and_explicit_template() -> None:
    kwargs = contact_table_create_kwargs(load_template(TEMPLATE_PATH))
    assert kwargs["TableName"] == "voicebridge-contacts"
    assert kwargs["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in kwargs


# --- samconfig and the layer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samconfig() -> dict[str, Any]:
    with (REPO / "samconfig.toml").open("rb") as handle:
        config: dict[str, Any] = tomllib.load(handle)
    return config


def _overrides(section: dict[str, Any]) -> dict[str, str]:
    value = section["deploy"]["parameters"]["parameter_overrides"]
    items = value if isinstance(value, list) else value.split()
    return dict(item.split("=", 1) for item in items)


@pytest.mark.parametrize("env", ["default", "dev", "prod"])
def test_samconfig_environments(samconfig: dict[str, Any], template: dict[str, Any], env: str) -> None:
    section = samconfig[env]
    assert section["validate"]["parameters"]["lint"] is True
    assert section["build"]["parameters"]["cached"] is True
    deploy = section["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    overrides = _overrides(section)
    # Only real parameters, and each value one the parameter accepts.
    for name, value in overrides.items():
        parameter = template["Parameters"][name]
        if "AllowedValues" in parameter:
            assert value in [str(v) for v in parameter["AllowedValues"]], (env, name)


def test_samconfig_dev_and_prod_differ_where_they_should(samconfig: dict[str, Any]) -> None:
    names = {env: samconfig[env]["global"]["parameters"]["stack_name"] for env in ("default", "dev", "prod")}
    assert len(set(names.values())) == 3
    dev, prod = _overrides(samconfig["dev"]), _overrides(samconfig["prod"])
    assert (dev["LogLevel"], prod["LogLevel"]) == ("DEBUG", "INFO")
    assert int(prod["LogRetentionInDays"]) > int(dev["LogRetentionInDays"])
    assert prod["TableDeletionProtection"] == "true"
    assert samconfig["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


def test_runtime_layer_pins_exact_versions_of_the_package_dependencies() -> None:
    lines = (REPO / "layers" / "runtime" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
    assert all("==" in pin for pin in pins), pins
    pinned = {re.split(r"[\[=]", pin)[0].lower() for pin in pins}
    with (REPO / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    declared = {re.split(r"[\[<>=!~ ;]", dep)[0].lower() for dep in dependencies}
    assert pinned == declared
    assert "boto3==1.44.8" in pins
    assert "aws-lambda-powertools[tracer]==3.37.0" in pins
    assert "requests==2.34.2" in pins


def test_layer_build_does_not_also_package_dependencies_into_the_function() -> None:
    # Dependencies come from the layer only; a function requirements.txt may exist (empty) for `sam build`.
    requirements = REPO / "functions" / "bridge" / "requirements.txt"
    if requirements.exists():
        content = [line for line in requirements.read_text(encoding="utf-8").splitlines() if line.strip()]
        assert all(line.lstrip().startswith("#") for line in content)


def test_no_literal_account_ids_or_regions(template: dict[str, Any]) -> None:
    for value in _walk(template["Resources"]):
        if isinstance(value, str):
            assert not re.search(r"\b\d{12}\b", value), value
            assert not re.search(r"\b(us|eu|ap|ca|sa|me|af)-[a-z]+-\d\b", value), value


def test_the_defaults_ride_out_an_hour_of_servicenow_outage(template: dict[str, Any]) -> None:
    """README "Reliability": while ServiceNow is unavailable for every contact an invocation holds the shard for a
    backoff that doubles from 2 s up to the rest of its Timeout (bridge.processor), so Lambda's bounded retries span
    the sum of those holds. The defaults must cover an hourly rate-limit window, within the record age, and the
    sweeper must not close calls meanwhile."""
    from bridge.factory import SAFETY_MARGIN_SECONDS
    from bridge.processor import OUTAGE_BACKOFF_S

    parameters = template["Parameters"]
    timeout = parameters["Timeout"]["Default"]
    retries = parameters["MaximumRetryAttempts"]["Default"]
    cap = timeout - SAFETY_MARGIN_SECONDS
    covered = sum(min(cap, OUTAGE_BACKOFF_S * 2**attempt) for attempt in range(retries + 1))
    assert covered >= 4200  # 70 minutes: README "Reliability"
    assert parameters["MaximumRecordAgeInSeconds"]["Default"] > covered
    assert parameters["IdleCloseMinutes"]["Default"] * 60 > covered
