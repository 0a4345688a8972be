"""The sweeper in template.yaml: its function, schedule, parameters, least-privilege role, log group and the sparse
index it queries (what neither cfn-lint nor `sam validate --lint` checks)."""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bridge.adapters.dynamodb import OPEN_INDEX, DynamoContactStore, to_item
from bridge.models import ContactState, ContactStatus
from voicebridge.template import contact_table_create_kwargs, load_template

pytestmark = pytest.mark.unit

XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
TABLE_ARN = {"Fn::GetAtt": ["ContactTable", "Arn"]}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _function(template: dict[str, Any]) -> dict[str, Any]:
    resource = template["Resources"]["SweeperFunction"]
    assert resource["Type"] == "AWS::Serverless::Function"
    props: dict[str, Any] = resource["Properties"]
    return props


def _statements(template: dict[str, Any]) -> list[tuple[str | None, dict[str, Any]]]:
    role = template["Resources"]["SweeperFunctionRole"]
    assert role["Type"] == "AWS::IAM::Role"
    found: list[tuple[str | None, dict[str, Any]]] = []
    for policy in role["Properties"]["Policies"]:
        for item in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in item:
                condition, when_true, when_false = item["Fn::If"]
                assert when_false == {"Ref": "AWS::NoValue"}
                found.append((condition, when_true))
            else:
                found.append((None, item))
    return found


def _by_sid(template: dict[str, Any], sid: str) -> dict[str, Any]:
    (statement,) = [st for _, st in _statements(template) if st.get("Sid") == sid]
    return statement


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_function_shares_the_code_package_and_layer(template: dict[str, Any]) -> None:
    fn = _function(template)
    assert fn["CodeUri"] == "functions/bridge/"
    assert fn["Handler"] == "bridge.sweeper.lambda_handler"
    assert fn["Runtime"] == "python3.13" and fn["Architectures"] == ["arm64"]
    assert fn["Layers"] == [{"Ref": "RuntimeDependenciesLayer"}]
    assert fn["Role"] == {"Fn::GetAtt": ["SweeperFunctionRole", "Arn"]}
    assert "Policies" not in fn
    assert "ManagedPolicyArns" not in template["Resources"]["SweeperFunctionRole"]["Properties"]


def test_schedule_and_parameters_are_wired(template: dict[str, Any]) -> None:
    fn = _function(template)
    schedule = fn["Events"]["Sweep"]
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == {"Ref": "SweepSchedule"}
    parameters = template["Parameters"]
    assert parameters["SweepSchedule"]["Default"] == "rate(5 minutes)"
    pattern = parameters["SweepSchedule"]["AllowedPattern"]
    for good in ("rate(5 minutes)", "rate(1 hour)", "cron(0/5 * * * ? *)"):
        assert re.fullmatch(pattern, good), good
    assert not re.fullmatch(pattern, "every 5 minutes")
    idle = parameters["IdleCloseMinutes"]
    assert idle["Type"] == "Number" and idle["Default"] == 90 and idle["MinValue"] >= 10
    variables = fn["Environment"]["Variables"]
    assert variables["IDLE_CLOSE_MINUTES"] == {"Ref": "IdleCloseMinutes"}
    assert variables["DISCONNECT_CLOSE_ENABLED"] == {"Ref": "DisconnectCloseEnabled"}
    assert variables["CONTACT_TABLE"] == {"Ref": "ContactTable"}
    assert variables["SERVICENOW_SECRET_ARN"] == {"Ref": "ServiceNowSecretArn"}
    # the same recording URL as the bridge
    bridge_variables = template["Resources"]["BridgeFunction"]["Properties"]["Environment"]["Variables"]
    for name in ("SERVICENOW_URL", "RECORDING_URL_TEMPLATE", "CONNECT_INSTANCE_ALIAS"):
        assert variables[name] == bridge_variables[name]
    assert "PARKING_QUEUE_URL" not in variables  # the sweeper parks nothing


def test_disconnected_events_rule(template: dict[str, Any]) -> None:
    rule = _function(template)["Events"]["Disconnected"]
    assert rule["Type"] == "EventBridgeRule"
    assert rule["Properties"]["Pattern"] == {
        "source": ["aws.connect"],
        "detail-type": ["Amazon Connect Contact Event"],
        "detail": {"eventType": ["DISCONNECTED"], "channel": ["VOICE"]},
    }


def test_role_has_no_wildcard_action_and_scoped_resources(template: dict[str, Any]) -> None:
    for condition, statement in _statements(template):
        actions = _as_list(statement["Action"])
        assert all("*" not in action for action in actions), statement["Sid"]
        assert statement["Effect"] == "Allow"
        if set(actions) == XRAY_ACTIONS:
            continue  # no resource-level permissions exist for these two
        if statement["Sid"] == "VpcNetworkInterfaces":
            assert condition == "HasVpc"  # network interfaces only for a function in a VPC (VpcSubnetIds)
            continue
        assert statement["Resource"] != "*", statement["Sid"]


def test_role_statements_are_exactly_what_the_sweeper_uses(template: dict[str, Any]) -> None:
    state = _by_sid(template, "ContactState")
    assert set(state["Action"]) == {"dynamodb:BatchGetItem", "dynamodb:PutItem"}
    assert state["Resource"] == TABLE_ARN
    query = _by_sid(template, "QueryOpenIndex")
    assert query["Action"] == "dynamodb:Query"
    assert query["Resource"] == {"Fn::Sub": "${ContactTable.Arn}/index/" + OPEN_INDEX}
    secret = _by_sid(template, "ReadServiceNowSecret")
    assert secret["Action"] == "secretsmanager:GetSecretValue"
    assert secret["Resource"] == {"Ref": "ServiceNowSecretArn"}
    logs = _by_sid(template, "WriteOwnLogs")
    assert set(logs["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert logs["Resource"] == {"Fn::GetAtt": ["SweeperLogGroup", "Arn"]}
    connect = _by_sid(template, "ConnectContacts")
    assert connect["Action"] == "connect:DescribeContact"
    assert connect["Resource"] == {"Fn::Sub": "${ConnectInstanceArn}/contact/*"}
    every_action = {a for _, st in _statements(template) for a in _as_list(st["Action"])}
    assert not every_action & {"dynamodb:Scan", "dynamodb:DeleteItem", "sqs:SendMessage", "logs:CreateLogGroup"}
    conditional = {st["Sid"]: condition for condition, st in _statements(template) if condition}
    assert conditional == {
        "DecryptServiceNowSecret": "HasSecretKmsKey",
        "ConnectContacts": "HasConnectInstance",
        "VpcNetworkInterfaces": "HasVpc",
    }


def test_own_log_group_with_retention(template: dict[str, Any]) -> None:
    group = template["Resources"]["SweeperLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-sweeper"}
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert _function(template)["LoggingConfig"] == {"LogGroup": {"Ref": "SweeperLogGroup"}}
    assert _function(template)["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-sweeper"}


def test_sparse_index_matches_the_adapter(template: dict[str, Any]) -> None:
    table = template["Resources"]["ContactTable"]["Properties"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == OPEN_INDEX
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}  # no index write per bridge write
    keys = {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]}
    item = to_item(ContactState("c-1", ContactStatus.OPEN, 1, updated_at=1_800_000_000))
    types = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    for attribute in keys.values():
        assert attribute in item and types[attribute] in item[attribute]


def test_the_index_query_runs_against_the_template_schema() -> None:
    # moto builds the table (and its sparse index) from the template, as replay and the tests do.
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**contact_table_create_kwargs(table_name="contacts"))
        store = DynamoContactStore(client, "contacts")
        store.claim("c-old", "", 1_800_000_000 - 7200)
        store.claim("c-new", "", 1_800_000_000)
        closed = store.claim("c-closed", "", 1_800_000_000 - 7200)
        store.save(closed.evolve(status=ContactStatus.CLOSED), expected_version=1)
        assert store.idle_contact_ids(1_800_000_000 - 3600, 10) == ["c-old"]
        assert store.idle_contact_ids(1_800_000_000 - 3600, 0) == []
