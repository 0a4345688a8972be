"""PostCallFunction in template.yaml: its trigger, least-privilege role, failure path, parameters and alarms."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bridge.postcall.keys import parse_key
from voicebridge.template import load_template

FIXTURES = Path(__file__).resolve().parents[2] / "events" / "postcall" / "bucket"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][name]["Properties"]
    return properties


def statements(template: dict[str, Any]) -> dict[str, tuple[str | None, dict[str, Any]]]:
    found: dict[str, tuple[str | None, dict[str, Any]]] = {}
    for policy in resource(template, "PostCallFunctionRole")["Policies"]:
        for item in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in item:
                condition, when_true, when_false = item["Fn::If"]
                assert when_false == {"Ref": "AWS::NoValue"}
                found[when_true["Sid"]] = (condition, when_true)
            else:
                found[item["Sid"]] = (None, item)
    return found


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    # EventBridge wildcard matching: * matches any run of characters, "/" included.
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def test_the_function_is_the_postcall_handler_with_its_own_role_and_log_group(template: dict[str, Any]) -> None:
    assert template["Resources"]["PostCallFunction"]["Condition"] == "ImportsPostCall"
    function = resource(template, "PostCallFunction")
    assert function["Handler"] == "bridge.postcall_handler.lambda_handler"
    assert function["CodeUri"] == "functions/bridge/"
    assert function["Role"] == {"Fn::GetAtt": ["PostCallFunctionRole", "Arn"]}
    assert function["LoggingConfig"] == {"LogGroup": {"Ref": "PostCallLogGroup"}}
    variables = function["Environment"]["Variables"]
    assert variables["TRANSCRIPT_SOURCE"] == {"Ref": "TranscriptSource"}
    assert variables["ANALYSIS_VARIANT"] == {"Ref": "AnalysisVariant"}
    assert variables["ANALYSIS_BUCKET"] == {"Ref": "AnalysisBucketName"}
    assert variables["REDACT_CONTENT"] == {"Ref": "RedactContent"}
    assert template["Conditions"]["ImportsPostCall"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "TranscriptSource"}, "realtime"]}]
    }


def test_parameters_and_their_defaults(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["TranscriptSource"]["Default"] == "realtime"
    assert parameters["TranscriptSource"]["AllowedValues"] == ["realtime", "postcall", "realtime+postcall"]
    assert parameters["AnalysisVariant"]["Default"] == "redacted"
    assert parameters["AnalysisVariant"]["AllowedValues"] == ["redacted", "raw"]
    assert re.fullmatch(parameters["AnalysisBucketName"]["AllowedPattern"], "amazon-connect-0a1b2c3d4e5f")
    assert not re.fullmatch(parameters["AnalysisBucketName"]["AllowedPattern"], "arn:aws:s3:::bucket")
    rules = template["Rules"]
    assert rules["PostCallImportNeedsBucket"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AnalysisBucketName"}, ""]}]
    }
    assert rules["PostCallOnlyStopsTheStream"]["RuleCondition"] == {
        "Fn::Equals": [{"Ref": "TranscriptSource"}, "postcall"]
    }


def test_the_trigger_is_object_created_on_the_bucket_filtered_to_the_variants_analysis_files(
    template: dict[str, Any],
) -> None:
    event = resource(template, "PostCallFunction")["Events"]["AnalysisFileCreated"]
    assert event["Type"] == "EventBridgeRule"
    pattern = event["Properties"]["Pattern"]
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "AnalysisBucketName"}]
    ((condition, redacted, raw),) = [key["wildcard"]["Fn::If"] for key in pattern["detail"]["object"]["key"]]
    assert condition == "ImportsRedacted"
    redacted_re = wildcard_regex(redacted["Fn::Sub"].replace("${AnalysisKeyPrefix}", ""))
    raw_re = wildcard_regex(raw["Fn::Sub"].replace("${AnalysisKeyPrefix}", ""))
    keys = [str(path.relative_to(FIXTURES)) for path in FIXTURES.rglob("*") if path.is_file()]
    for key in keys:
        parsed = parse_key(key)
        assert bool(redacted_re.match(key)) == (parsed is not None and parsed.variant.value == "redacted"), key
        if parsed is not None:  # the raw pattern lets Redacted/ files through too: the handler skips them
            assert raw_re.match(key), key
        else:
            assert not raw_re.match(key), key


def test_retries_then_the_failure_queue(template: dict[str, Any]) -> None:
    function = resource(template, "PostCallFunction")
    config = function["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == 2
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["PostCallFailureQueue", "Arn"]},
    }
    rule = function["Events"]["AnalysisFileCreated"]["Properties"]
    assert rule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["PostCallFailureQueue", "Arn"]}}
    # EventBridge sends dead letters with the queue's policy: only this rule may.
    (statement,) = resource(template, "PostCallFailureQueuePolicy")["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::Sub"].endswith(
        ":rule/" + rule["RuleName"]["Fn::Sub"]
    )


def test_the_role_reads_only_the_analysis_prefix_and_writes_only_its_queues(template: dict[str, Any]) -> None:
    found = statements(template)
    _, read = found["ReadAnalysisFiles"]
    assert read["Action"] == "s3:GetObject"  # no ListBucket, no PutObject, no recordings
    condition, redacted, raw = read["Resource"]["Fn::If"]
    assert condition == "ImportsRedacted"
    assert redacted["Fn::Sub"].endswith("/${AnalysisKeyPrefix}Analysis/Voice/Redacted/*")
    assert raw["Fn::Sub"].endswith("/${AnalysisKeyPrefix}Analysis/Voice/*")
    assert set(found["ContactState"][1]["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem"}
    kms_condition, kms = found["DecryptAnalysisFiles"]
    assert kms_condition == "HasAnalysisKmsKey"
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}}
    assert found["SendToQueues"][1]["Resource"] == [
        {"Fn::GetAtt": ["ParkingQueue", "Arn"]},
        {"Fn::GetAtt": ["PostCallFailureQueue", "Arn"]},
    ]
    assert found["WriteOwnLogs"][1]["Resource"] == {"Fn::GetAtt": ["PostCallLogGroup", "Arn"]}
    for sid, (_, statement) in found.items():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions), sid


def test_the_alarms_watch_metrics_the_handler_publishes(template: dict[str, Any]) -> None:
    # Imported here: the handler's Metrics() reads POWERTOOLS_METRICS_NAMESPACE, set per test (tests/conftest.py).
    from bridge.postcall_handler import METRIC_NAMES

    published = set(METRIC_NAMES.values())
    for name in ("PostCallParkedAlarm", "PostCallErrorsAlarm"):
        alarm = resource(template, name)
        assert alarm["Namespace"] == "voicebridge"
        assert alarm["MetricName"] in published
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "voicebridge-postcall"}]
    assert resource(template, "PostCallFunction")["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == (
        "voicebridge-postcall"
    )
    depth = resource(template, "PostCallFailureQueueDepthAlarm")
    assert depth["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["PostCallFailureQueue", "QueueName"]}}
    ]
