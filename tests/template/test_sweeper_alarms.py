"""The sweeper's alarms in template.yaml: its invocation errors, and the contacts a sweep left open past the idle
limit (``SweepLeftOpen``, published by bridge/sweeper.py: tests/functional/test_sweep_cli.py reads it from the
real handler's EMF)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from voicebridge.template import load_template

pytestmark = pytest.mark.unit
SWEEPER_ALARMS = ("SweeperErrorsAlarm", "SweeperLeftOpenAlarm")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def alarm(template: dict[str, Any], name: str) -> dict[str, Any]:
    resource = template["Resources"][name]
    assert resource["Type"] == "AWS::CloudWatch::Alarm"
    properties: dict[str, Any] = resource["Properties"]
    return properties


def sweeper_metric_names() -> set[str]:
    """Every metric name bridge/sweeper.py publishes (its add_metric calls)."""
    from bridge import sweeper

    return set(re.findall(r'add_metric\(name="([A-Z][A-Za-z]+)"', Path(sweeper.__file__).read_text(encoding="utf-8")))


def test_errors_alarm_watches_the_sweeper_functions_lambda_errors(template: dict[str, Any]) -> None:
    errors = alarm(template, "SweeperErrorsAlarm")
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SweeperFunction"}}]
    assert (errors["ComparisonOperator"], errors["Threshold"], errors["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        0,
        1,
    )


def test_left_open_alarm_watches_a_metric_the_sweeper_publishes_where_the_function_publishes_it(
    template: dict[str, Any],
) -> None:
    left_open = alarm(template, "SweeperLeftOpenAlarm")
    assert left_open["MetricName"] == "SweepLeftOpen"
    assert left_open["MetricName"] in sweeper_metric_names()
    variables = template["Resources"]["SweeperFunction"]["Properties"]["Environment"]["Variables"]
    # Powertools publishes under the function's namespace with its service as the only dimension.
    assert left_open["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"] == "voicebridge"
    assert left_open["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]
    # One run is enough: a close refused for good is counted by a single sweep, then never retried.
    assert (left_open["ComparisonOperator"], left_open["Threshold"], left_open["EvaluationPeriods"]) == (
        "GreaterThanThreshold",
        0,
        1,
    )


@pytest.mark.parametrize("name", SWEEPER_ALARMS)
def test_each_sweeper_alarm_notifies_only_with_a_topic_and_is_on_the_dashboard_and_listed(
    template: dict[str, Any], name: str
) -> None:
    properties = alarm(template, name)
    actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert properties["AlarmActions"] == properties["OKActions"] == actions
    assert properties["TreatMissingData"] == "notBreaching"
    suffix = {"SweeperErrorsAlarm": "sweeper-errors", "SweeperLeftOpenAlarm": "sweeper-left-open"}[name]
    assert properties["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{suffix}"}
    assert properties["Period"] == 300
    (dashboard,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert f'"${{{name}.Arn}}"' in dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    _, refs = template["Outputs"]["AlarmNames"]["Value"]["Fn::Join"]
    assert {"Ref": name} in refs


def test_left_open_counts_the_errors_and_the_contacts_deferred_to_the_next_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The sweeper's own publishing, its EMF document read back (no sockets: the result is built by hand)."""
    import json

    from bridge import sweeper

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setattr(sweeper.metrics, "namespace", "voicebridge")
    result = sweeper.SweepResult(
        candidates=5,
        outcomes=[
            sweeper.SweepOutcome("c-1", "closed", "i-1"),
            sweeper.SweepOutcome("c-2", "error", "i-2", error_class="ServiceNowUnavailableError"),
            sweeper.SweepOutcome("c-3", "conflict", "i-3"),  # the bridge wrote it: active, not left open
        ],
        deferred=2,
    )
    sweeper.metrics.clear_metrics()  # what earlier sweeps in this process added (the module's Metrics is global)
    capsys.readouterr()
    sweeper._publish(result)
    sweeper.metrics.flush_metrics()
    (document,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert document["SweepLeftOpen"] == [3.0]
    assert (document["SweepErrors"], document["InteractionsSwept"]) == ([1.0], [1.0])
