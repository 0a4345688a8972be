"""Operations resources in template.yaml: the contact timeline query, alarms, dashboard, metrics dimensions."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from voicebridge.operate.trace import CONTACT_TIMELINE_QUERY
from voicebridge.template import load_template

pytestmark = pytest.mark.unit

ALARM_TOPIC_ACTIONS = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
SERVICE_DIMENSION = [{"Name": "service", "Value": "voicebridge"}]
FUNCTION_DIMENSION = [{"Name": "FunctionName", "Value": {"Ref": "BridgeFunction"}}]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in template["Resources"].items() if r["Type"] == kind}


def _alarm(template: dict[str, Any], name: str) -> dict[str, Any]:
    resource = template["Resources"][name]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def _metric_stats(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}


def _expression(alarm: dict[str, Any]) -> str:
    (returned,) = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    expression: str = returned["Expression"]
    return expression


def _telemetry_metric_names() -> set[str]:
    """Every metric name the bridge publishes: batch_counts' keys (with lag present) and publish's own names."""
    from pathlib import Path

    from bridge import telemetry
    from bridge.processor import BatchResult

    source = Path(telemetry.__file__).read_text(encoding="utf-8")
    return set(telemetry.batch_counts(BatchResult(lag_ms=[1.0]))) | set(re.findall(r'name="([A-Z][A-Za-z]+)"', source))


def test_query_definition_is_the_one_trace_runs(template: dict[str, Any]) -> None:
    (query,) = _resources(template, "AWS::Logs::QueryDefinition").values()
    assert query["QueryString"] == CONTACT_TIMELINE_QUERY
    assert query["LogGroupNames"] == [{"Ref": "BridgeLogGroup"}]
    assert query["Name"] == {"Fn::Sub": "${AWS::StackName}/voicebridge contact timeline"}


def test_alarm_topic_parameter_is_optional_and_validated(template: dict[str, Any]) -> None:
    parameter = template["Parameters"]["AlarmTopicArn"]
    assert parameter["Default"] == ""
    pattern = parameter["AllowedPattern"]
    assert re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "arn:aws:sns:eu-west-1:123456789012:voicebridge-alarms")
    assert not re.fullmatch(pattern, "arn:aws:sqs:eu-west-1:123456789012:queue")
    assert template["Conditions"]["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}


def test_every_alarm_notifies_only_when_a_topic_is_set(template: dict[str, Any]) -> None:
    alarms = _resources(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 4
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == ALARM_TOPIC_ACTIONS, name
        assert alarm["OKActions"] == ALARM_TOPIC_ACTIONS, name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), name


def test_iterator_age_alarm(template: dict[str, Any]) -> None:
    alarm = _alarm(template, "IteratorAgeAlarm")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "IteratorAge", "Maximum")
    assert alarm["Dimensions"] == FUNCTION_DIMENSION
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["Threshold"] == 60000  # milliseconds


@pytest.mark.parametrize(
    ("name", "queue"),
    [("ParkingQueueDepthAlarm", "ParkingQueue"), ("StreamFailureQueueDepthAlarm", "StreamFailureQueue")],
)
def test_queue_depth_alarms_fire_on_any_message(template: dict[str, Any], name: str, queue: str) -> None:
    alarm = _alarm(template, name)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["Statistic"]) == (
        "GreaterThanThreshold",
        0,
        "Maximum",
    )


def test_function_error_rate_alarm(template: dict[str, Any]) -> None:
    alarm = _alarm(template, "FunctionErrorRateAlarm")
    stats = _metric_stats(alarm)
    assert {stat["Metric"]["MetricName"] for stat in stats.values()} == {"Errors", "Invocations"}
    for stat in stats.values():
        assert stat["Metric"]["Namespace"] == "AWS/Lambda"
        assert stat["Metric"]["Dimensions"] == FUNCTION_DIMENSION
        assert stat["Stat"] == "Sum"
    assert _expression(alarm) == "IF(invocations > 0, 100 * errors / invocations, 0)"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 1)


def test_servicenow_error_rate_alarm_uses_metrics_the_bridge_publishes(template: dict[str, Any]) -> None:
    alarm = _alarm(template, "ServiceNowErrorRateAlarm")
    stats = _metric_stats(alarm)
    names = {stat["Metric"]["MetricName"] for stat in stats.values()}
    assert names == {"ServiceNowErrors", "ServiceNowRequests"}
    assert names <= _telemetry_metric_names()
    for stat in stats.values():
        # The namespace the function is configured with, and Powertools' default dimension set (service only).
        assert stat["Metric"]["Namespace"] == "voicebridge"
        assert stat["Metric"]["Dimensions"] == SERVICE_DIMENSION
    variables = template["Resources"]["BridgeFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "voicebridge"
    assert variables["POWERTOOLS_SERVICE_NAME"] == "voicebridge"
    assert _expression(alarm) == "IF(requests > 0, 100 * errors / requests, 0)"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 5)


def _substituted_dashboard(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (dashboard,) = _resources(template, "AWS::CloudWatch::Dashboard").values()
    body = dashboard["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    return body, json.loads(re.sub(r"\$\{[^}]+\}", "PLACEHOLDER", body))


def test_dashboard_body_is_json_and_its_placeholders_resolve(template: dict[str, Any]) -> None:
    body, document = _substituted_dashboard(template)
    assert len(document["widgets"]) >= 8
    for placeholder in re.findall(r"\$\{([^}]+)\}", body):
        name, _, attribute = placeholder.partition(".")
        if name.startswith("AWS::"):
            continue
        assert name in template["Resources"] or name in template["Parameters"], placeholder
        if attribute:
            assert attribute in {"Arn", "QueueName"}, placeholder


def test_dashboard_shows_every_alarm_and_the_issue_metrics(template: dict[str, Any]) -> None:
    body, document = _substituted_dashboard(template)
    (alarm_widget,) = [w for w in document["widgets"] if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(_resources(template, "AWS::CloudWatch::Alarm"))
    for alarm in _resources(template, "AWS::CloudWatch::Alarm"):
        assert f"${{{alarm}.Arn}}" in body
    published = _telemetry_metric_names()
    shown = set()
    for widget in document["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            if isinstance(metric[0], str) and metric[0] == "voicebridge":
                shown.add(metric[1])
                assert metric[1] in published, metric[1]
    expected = {
        "SegmentsReceived",
        "SegmentsSent",
        "DuplicatesSkipped",
        "UtterancesIgnored",
        "InteractionsOpened",
        "InteractionsClosed",
        "ServiceNowRequests",
        "ServiceNowErrors",
        "SegmentLagMaxMs",
        "BatchDurationMs",
    }
    assert expected <= shown
    # Parked by reason and errors by class come through SEARCH over their dimension.
    assert "{voicebridge,reason,service}" in body and "RecordsParkedByReason" in body
    assert "{voicebridge,error_class,service}" in body and "ContactErrors" in body


def test_no_contact_id_dimension_anywhere(template: dict[str, Any]) -> None:
    for name, alarm in _resources(template, "AWS::CloudWatch::Alarm").items():
        dimensions = list(alarm.get("Dimensions", []))
        for stat in _metric_stats(alarm).values() if "Metrics" in alarm else []:
            dimensions += stat["Metric"].get("Dimensions", [])
        assert all("contact" not in d["Name"].lower() for d in dimensions), name
    _, document = _substituted_dashboard(template)
    for widget in document["widgets"]:
        for metric in widget["properties"].get("metrics", []):
            strings = [part for part in metric if isinstance(part, str)]
            dimension_names = strings[2::2]  # [namespace, metric name, dim1, value1, dim2, value2, ...]
            assert not any("contact" in name.lower() for name in dimension_names), metric
            for part in metric:
                if isinstance(part, dict) and "expression" in part:
                    assert "contact_id" not in part["expression"].lower()


def test_published_emf_never_has_a_contact_dimension(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """Run telemetry.publish with metrics enabled and read every EMF document it prints."""
    from aws_lambda_powertools import Metrics

    from bridge import telemetry
    from bridge.ports import ParkedItem
    from bridge.processor import BatchResult
    from bridge.runner import ContactOutcome

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "voicebridge")
    metrics = Metrics(namespace="voicebridge")
    metrics.clear_metrics()  # Powertools shares metric state across instances: handler runs elsewhere add to it
    outcomes = [
        ContactOutcome("contact-1", "1", sent=3, opened=True, servicenow_requests=3),
        ContactOutcome("contact-2", "2", retry=True, error_class="ServiceNowUnavailableError", servicenow_requests=1),
    ]
    result = BatchResult(
        outcomes=outcomes,
        parked=[ParkedItem("after_close", "late", ({"sequenceNumber": "3"},), "contact-3")],
        records=3,
        lag_ms=[120.0, 80.0],
    )
    capsys.readouterr()
    telemetry.publish(metrics, result, 12.5)
    metrics.flush_metrics()
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert documents
    names: set[str] = set()
    for document in documents:
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "voicebridge"
            for dimension_set in directive["Dimensions"]:
                assert set(dimension_set) <= {"service", "reason", "error_class"}
            names |= {metric["Name"] for metric in directive["Metrics"]}
        assert "contact-1" not in json.dumps(document)
    assert {"ServiceNowErrors", "ServiceNowRequests", "RecordsParkedByReason", "ContactErrors"} <= names
    (errors,) = [d for d in documents if "ServiceNowErrors" in d]
    assert errors["ServiceNowErrors"] == [1.0]
    assert os.environ.get("POWERTOOLS_METRICS_DISABLED") is None


def test_outputs_name_the_query_and_dashboard(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ContactTimelineQueryId"]["Value"] == {"Ref": "ContactTimelineQuery"}
    assert outputs["OperationsDashboardName"]["Value"] == {"Ref": "OperationsDashboard"}
    # trace --stack reads these outputs
    for name in ("BridgeLogGroupName", "ContactTableName", "ParkingQueueUrl"):
        assert name in outputs
