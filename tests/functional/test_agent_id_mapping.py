"""agentId from a Connect agent (issue 14 §3): the Username as is, without its domain, or a flow-set contact
attribute; through the real handler and the emulator over HTTP (Connect through the fake directory port; the
stand-in's HTTP path is tested with the real adapters in tests/connect)."""

from __future__ import annotations

import pytest

from bridge.config import AgentIdFormat
from bridge.directory import agent_user_name
from bridge.ports import ContactDetails
from tests.events_builder import call_events, lambda_records
from tests.fakes import FakeConnect
from tests.functional.conftest import Stack

pytestmark = pytest.mark.functional


@pytest.mark.parametrize(
    ("username", "agent_format", "expected"),
    [
        ("priya@example.com", AgentIdFormat.AS_IS, "priya@example.com"),
        ("priya@example.com", AgentIdFormat.STRIP_DOMAIN, "priya"),
        ("EXAMPLE\\priya", AgentIdFormat.STRIP_DOMAIN, "priya"),
        ("priya", AgentIdFormat.STRIP_DOMAIN, "priya"),
        ("  ", AgentIdFormat.AS_IS, None),
        (None, AgentIdFormat.STRIP_DOMAIN, None),
        ("@example.com", AgentIdFormat.STRIP_DOMAIN, None),
    ],
)
def test_agent_user_name(username: str | None, agent_format: AgentIdFormat, expected: str | None) -> None:
    assert agent_user_name(username, agent_format) == expected


@pytest.mark.parametrize(
    ("agent_format", "attributes", "expected"),
    [
        ("as_is", {}, "priya.r@example.com"),
        ("strip_domain", {}, "priya.r"),
        ("attribute", {"ServiceNowAgentId": "p.raman"}, "p.raman"),
        ("attribute", {}, ""),  # no attribute set by the flow: no agentId rather than a wrong one
    ],
)
def test_the_interaction_is_assigned_to_the_mapped_agent(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, agent_format: str, attributes: dict[str, str], expected: str
) -> None:
    from bridge import factory

    monkeypatch.setenv("AGENT_LOOKUP", "describe_user")
    monkeypatch.setenv("AGENT_ID_FORMAT", agent_format)
    factory.reset()
    connect = FakeConnect(
        ContactDetails("+14155550100", agent_id="agent-1"),
        attributes=attributes,
        usernames={"agent-1": "priya.r@example.com"},
    )
    factory.get_bridge().processor.runner.directory.connect = connect
    assert stack.invoke(lambda_records(call_events("c-agent", 2))) == {"batchItemFailures": []}
    (interaction,) = stack.interactions("c-agent")
    assert interaction["assigned_to"] == expected
    assert ("DescribeUser" in connect.calls) is (agent_format != "attribute")
