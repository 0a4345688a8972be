"""Shared fixtures: a clean environment and clean Powertools caches for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

BRIDGE_VARIABLES = (
    "SERVICENOW_URL",
    "SERVICENOW_SECRET_ARN",
    "CONTACT_TABLE",
    "PARKING_QUEUE_URL",
    "RECORDING_URL_TEMPLATE",
    "CONNECT_INSTANCE_ALIAS",
    "CALLER_LOOKUP",
    "CALLER_ATTRIBUTE",
    "FALLBACK_USER_ID",
    "AGENT_LOOKUP",
    "INBOUND_ID",
    "FORWARD_NOTES",
    "MAX_WORKERS",
    "CONTACT_TTL_DAYS",
    "VOICEBRIDGE_XRAY_SDK",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in BRIDGE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "voicebridge-tests")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "voicebridge")
    yield
    from aws_lambda_powertools.utilities import parameters

    from bridge import factory

    parameters.clear_caches()
    factory.reset()
