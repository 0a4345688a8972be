"""The bridge's real Connect adapter (bridge/adapters/connect.py), and the client the factory builds, against the
stand-in over HTTP: what each lookup returns, how Connect's errors become bridge errors, and the directory's
fallbacks (beside the Stubber tests, which cannot show the wire)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.adapters.connect import ConnectDirectoryClient
from bridge.config import AgentLookup, CallerLookup, Settings
from bridge.directory import ContactDirectory
from bridge.errors import ConnectLookupError, ConnectThrottledError
from tests.connect.conftest import AGENT1, AGENT2, INSTANCE, LEG1, LEG2, OTHER_CALL, client
from voicebridge.connect import RunningConnect

pytestmark = pytest.mark.integration

SETTINGS = Settings(
    servicenow_url="https://example.service-now.com",
    servicenow_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:sn",
    contact_table="contacts",
    parking_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/parking",
    connect_instance_alias="example",
)


def adapter(connect: RunningConnect, max_attempts: int = 1) -> ConnectDirectoryClient:
    return ConnectDirectoryClient(client("connect", connect.url, max_attempts))


def test_describe_contact_gives_caller_agent_and_recording(connect: RunningConnect) -> None:
    details = adapter(connect).describe_contact(INSTANCE, LEG1)

    assert (details.customer_number, details.agent_id, details.recording_location) == (
        "+12025550147",
        AGENT1,
        "bucket/connect/example/leg1.wav",
    )
    # The call's shape, for transfers (bridge.legs): the chain, how the leg began, and when things happened.
    assert details.initiation_method == "INBOUND" and details.initial_contact_id in (None, LEG1)
    assert details.initiated_at and details.agent_connected_at and details.agent_connected_at >= details.initiated_at
    other = adapter(connect).describe_contact(INSTANCE, OTHER_CALL)
    assert (other.customer_number, other.agent_id, other.recording_location) == (None, None, None)


def test_describe_contact_of_a_transfer_leg_names_its_call(connect: RunningConnect) -> None:
    leg = adapter(connect).describe_contact(INSTANCE, LEG2)
    assert leg.initial_contact_id == LEG1 and leg.initiation_method == "TRANSFER"
    associated = adapter(connect).associated_contacts(INSTANCE, LEG1)
    assert {c.contact_id for c in associated} >= {LEG1, LEG2}


def test_agent_username_and_attributes(connect: RunningConnect) -> None:
    assert adapter(connect).agent_username(INSTANCE, AGENT2) == "marco.r"
    assert adapter(connect).contact_attributes(INSTANCE, LEG2) == {"CallerNumber": "+12025550147", "Tier": "gold"}


@pytest.mark.parametrize(
    ("call", "operation"),
    [
        (lambda a: a.describe_contact(INSTANCE, "no-such-contact"), "DescribeContact"),
        (lambda a: a.agent_username(INSTANCE, "no-such-user"), "DescribeUser"),
        (lambda a: a.contact_attributes(INSTANCE, "no-such-contact"), "GetContactAttributes"),
    ],
)
def test_unknown_ids_become_a_lookup_error_not_a_retry(connect: RunningConnect, call: object, operation: str) -> None:
    with pytest.raises(ConnectLookupError) as raised:
        call(adapter(connect))  # type: ignore[operator]

    assert not isinstance(raised.value, ConnectThrottledError)
    assert str(raised.value) == f"{operation}: ResourceNotFoundException"


def test_throttling_beyond_the_sdks_retries_becomes_a_retryable_error(connect: RunningConnect) -> None:
    connect.throttle(3, "DescribeContact")

    with pytest.raises(ConnectThrottledError, match="DescribeContact: ThrottlingException"):
        adapter(connect, max_attempts=3).describe_contact(INSTANCE, LEG1)

    # one throttle fewer than the attempts: the SDK rides it out and the lookup succeeds
    connect.throttle(2, "DescribeContact")
    assert adapter(connect, max_attempts=3).describe_contact(INSTANCE, LEG1).agent_id == AGENT1
    assert connect.stats()["DescribeContact"] == {429: 5, 200: 1}


def test_the_factorys_client_reaches_the_stand_in_through_the_standard_endpoint_variable(
    connect: RunningConnect, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given only AWS_ENDPOINT_URL_CONNECT (boto3 >= 1.28 honours it; pyproject pins >= 1.39), as replay sets it
    import boto3
    from botocore.config import Config

    from bridge.factory import _LazyConnect

    for name, value in connect.client_environment().items():
        monkeypatch.setenv(name, value)
    lazy = _LazyConnect(boto3.session.Session(), Config(retries={"mode": "standard", "max_attempts": 0}))

    # When the directory opens an interaction and builds the recording link from the lookups
    settings = replace(SETTINGS, recording_url_template="https://recordings.example/{recording_location}")
    directory = ContactDirectory(settings, lazy)
    request, fallbacks = directory.open_request(INSTANCE, LEG1)

    # Then the caller's number, the agent's username and the recording come from the stand-in
    assert (request.user_id, request.caller_phone_number, request.agent_id) == (
        "+12025550147",
        "+12025550147",
        "priya.s",
    )
    assert fallbacks == []
    assert directory.recording_url(INSTANCE, LEG1) == "https://recordings.example/bucket/connect/example/leg1.wav"
    assert connect.stats()["DescribeContact"] == {200: 2} and connect.stats()["DescribeUser"] == {200: 1}


def test_an_unknown_contact_falls_back_and_says_which_lookup(connect: RunningConnect) -> None:
    directory = ContactDirectory(SETTINGS, adapter(connect))

    request, fallbacks = directory.open_request(INSTANCE, "no-such-contact")

    assert (request.user_id, request.caller_phone_number, request.agent_id) == ("anonymous", None, None)
    assert fallbacks == ["DescribeContact", "caller"]


def test_the_caller_from_a_contact_attribute(connect: RunningConnect) -> None:
    settings = replace(SETTINGS, caller_lookup=CallerLookup.ATTRIBUTE, agent_lookup=AgentLookup.NONE)

    request, fallbacks = ContactDirectory(settings, adapter(connect)).open_request(INSTANCE, LEG2)

    assert (request.user_id, request.agent_id, fallbacks) == ("+12025550147", None, [])
