"""template.yaml as `voicebridge smoke` and the README's deploy guide rely on it: the outputs smoke reads, the
optional VPC (static egress) and the kill switch."""

from __future__ import annotations

from typing import Any

import pytest

from voicebridge.operate.smoke import STACK_OUTPUTS, STACK_PARAMETERS
from voicebridge.template import load_template

pytestmark = pytest.mark.unit

# Every function that talks to ServiceNow needs the allow-listed egress (bridge, sweeper, post-call import).
FUNCTIONS = tuple(
    name
    for name, resource in load_template()["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
    and "SERVICENOW_URL" in resource["Properties"].get("Environment", {}).get("Variables", {})
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _conditional_statements(template: dict[str, Any], role: str) -> dict[str, tuple[str, dict[str, Any]]]:
    found = {}
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for item in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in item:
                condition, statement, otherwise = item["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}
                found[statement["Sid"]] = (condition, statement)
    return found


def test_every_output_smoke_reads_exists(template: dict[str, Any]) -> None:
    assert set(STACK_OUTPUTS) <= set(template["Outputs"])
    assert set(STACK_PARAMETERS) <= set(template["Parameters"])


def test_alarm_names_output_lists_every_alarm_of_the_stack(template: dict[str, Any]) -> None:
    alarms = {name for name, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    separator, refs = template["Outputs"]["AlarmNames"]["Value"]["Fn::Join"]
    assert separator == ","
    names = [ref["Ref"] for ref in refs]
    assert len(names) == len(set(names))
    assert set(names) == alarms


def test_connect_instance_output_only_with_an_instance(template: dict[str, Any]) -> None:
    output = template["Outputs"]["ConnectInstance"]
    assert output["Condition"] == "HasConnectInstance"  # an output value may not be empty
    assert output["Value"] == {"Ref": "ConnectInstanceArn"}


def test_kill_switch_parameter_drives_the_mapping(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["SegmentSourceEnabled"]
    assert parameter["Default"] == "true" and parameter["AllowedValues"] == ["true", "false"]
    segments = template["Resources"]["BridgeFunction"]["Properties"]["Events"]["Segments"]["Properties"]
    assert segments["Enabled"] == {"Ref": "SegmentSourceEnabled"}


def test_vpc_parameters_are_optional_lists(template: dict[str, Any]) -> None:
    for name in ("VpcSubnetIds", "VpcSecurityGroupIds"):
        parameter = template["Parameters"][name]
        assert parameter["Type"] == "CommaDelimitedList"
        assert parameter["Default"] == ""
    assert template["Conditions"]["HasVpc"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "VpcSubnetIds"}]}, ""]}]
    }


def test_one_vpc_list_without_the_other_is_refused(template: dict[str, Any]) -> None:
    rules = template["Rules"]
    pairs = {
        "VpcSubnetsNeedSecurityGroups": ("VpcSubnetIds", "VpcSecurityGroupIds"),
        "VpcSecurityGroupsNeedSubnets": ("VpcSecurityGroupIds", "VpcSubnetIds"),
    }
    for rule_name, (given, required) in pairs.items():
        rule = rules[rule_name]
        assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::Contains": [{"Ref": given}, ""]}]}
        (assertion,) = rule["Assertions"]
        assert assertion["Assert"] == {"Fn::Not": [{"Fn::Contains": [{"Ref": required}, ""]}]}


def test_the_servicenow_callers_are_found() -> None:
    assert {"BridgeFunction", "SweeperFunction"} <= set(FUNCTIONS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_servicenow_caller_joins_the_vpc_only_when_it_is_set(template: dict[str, Any], function: str) -> None:
    vpc = template["Resources"][function]["Properties"]["VpcConfig"]
    condition, when_set, otherwise = vpc["Fn::If"]
    assert condition == "HasVpc"
    assert when_set == {"SubnetIds": {"Ref": "VpcSubnetIds"}, "SecurityGroupIds": {"Ref": "VpcSecurityGroupIds"}}
    assert otherwise == {"Ref": "AWS::NoValue"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_network_interface_permissions_only_in_a_vpc(template: dict[str, Any], function: str) -> None:
    role = template["Resources"][function]["Properties"]["Role"]["Fn::GetAtt"][0]
    condition, statement = _conditional_statements(template, role)["VpcNetworkInterfaces"]
    assert condition == "HasVpc"
    assert set(statement["Action"]) == {
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
    assert statement["Resource"] == "*"
