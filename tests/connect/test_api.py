"""The stand-in through the real boto3 ``connect`` and ``connect-contact-lens`` clients over HTTP: each operation,
Connect's errors as botocore parses them, throttling, and pagination."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.connect.conftest import AGENT1, INSTANCE, LEG1, LEG2, OTHER_CALL, START, client, transcript
from voicebridge.connect import ConnectData, DeliveredSegments, RunningConnect, combined, start_connect

pytestmark = pytest.mark.integration


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_describe_contact_returns_the_contact_with_timestamps_parsed(connect: RunningConnect) -> None:
    contact = client("connect", connect.url).describe_contact(InstanceId=INSTANCE, ContactId=LEG2)["Contact"]

    assert contact["Id"] == LEG2 and contact["InitialContactId"] == LEG1 and contact["InitiationMethod"] == "TRANSFER"
    assert contact["InitiationTimestamp"] == datetime.fromtimestamp(START + 200, UTC)
    # an ISO 8601 string in the file travels as epoch seconds, so botocore parses it like any other
    assert contact["AgentInfo"]["ConnectedToAgentTimestamp"] == datetime(2025, 11, 27, 8, 3, 25, tzinfo=UTC)
    assert contact["CustomerEndpoint"] == {"Type": "TELEPHONE_NUMBER", "Address": "+12025550147"}


def test_describe_user_returns_the_user(connect: RunningConnect) -> None:
    user = client("connect", connect.url).describe_user(InstanceId=INSTANCE, UserId=AGENT1)["User"]

    assert user == {"Id": AGENT1, "Username": "priya.s", "IdentityInfo": {"FirstName": "Priya", "LastName": "Shah"}}


def test_contact_attributes_are_the_calls_for_every_leg(connect: RunningConnect) -> None:
    connect_client = client("connect", connect.url)

    first = connect_client.get_contact_attributes(InstanceId=INSTANCE, InitialContactId=LEG1)["Attributes"]
    second = connect_client.get_contact_attributes(InstanceId=INSTANCE, InitialContactId=LEG2)["Attributes"]
    none = connect_client.get_contact_attributes(InstanceId=INSTANCE, InitialContactId=OTHER_CALL)["Attributes"]

    assert first == second == {"CallerNumber": "+12025550147", "Tier": "gold"}
    assert none == {}


def test_associated_contacts_are_the_calls_legs_oldest_first_and_page(connect: RunningConnect) -> None:
    connect_client = client("connect", connect.url)

    whole = connect_client.list_associated_contacts(InstanceId=INSTANCE, ContactId=LEG2)
    first = connect_client.list_associated_contacts(InstanceId=INSTANCE, ContactId=LEG1, MaxResults=1)
    rest = connect_client.list_associated_contacts(
        InstanceId=INSTANCE, ContactId=LEG1, MaxResults=1, NextToken=first["NextToken"]
    )

    assert [item["ContactId"] for item in whole["ContactSummaryList"]] == [LEG1, LEG2]
    assert "NextToken" not in whole
    leg2 = whole["ContactSummaryList"][1]
    assert leg2["InitialContactId"] == LEG1 and leg2["PreviousContactId"] == LEG1
    assert leg2["InitiationTimestamp"] == datetime.fromtimestamp(START + 200, UTC) and "DisconnectTimestamp" not in leg2
    assert [item["ContactId"] for item in first["ContactSummaryList"] + rest["ContactSummaryList"]] == [LEG1, LEG2]
    assert "NextToken" not in rest
    alone = connect_client.list_associated_contacts(InstanceId=INSTANCE, ContactId=OTHER_CALL)
    assert [item["ContactId"] for item in alone["ContactSummaryList"]] == [OTHER_CALL]


def test_segments_page_through_next_token_in_order(connect: RunningConnect) -> None:
    lens = client("connect-contact-lens", connect.url)
    ids: list[str] = []
    tokens = 0
    request = {"InstanceId": INSTANCE, "ContactId": LEG1, "MaxResults": 3}
    while True:
        page = lens.list_realtime_contact_analysis_segments(**request)
        ids += [segment["Transcript"]["Id"] for segment in page["Segments"]]
        if "NextToken" not in page:
            break
        tokens += 1
        request["NextToken"] = page["NextToken"]

    assert ids == [f"t-{i}" for i in range(7)] and tokens == 2
    # a contact Connect knows without segments yet has none; the default page is the whole list (up to 100)
    assert lens.list_realtime_contact_analysis_segments(InstanceId=INSTANCE, ContactId=LEG2)["Segments"] == []


@pytest.mark.parametrize(
    ("operation", "service", "kwargs"),
    [
        ("describe_contact", "connect", {"ContactId": "no-such-contact"}),
        ("describe_user", "connect", {"UserId": "no-such-user"}),
        ("get_contact_attributes", "connect", {"InitialContactId": "no-such-contact"}),
        ("list_associated_contacts", "connect", {"ContactId": "no-such-contact"}),
        ("list_realtime_contact_analysis_segments", "connect-contact-lens", {"ContactId": "no-such-contact"}),
    ],
)
def test_unknown_ids_are_connects_resource_not_found(
    connect: RunningConnect, operation: str, service: str, kwargs: dict[str, str]
) -> None:
    service_client = client(service, connect.url)

    with pytest.raises(service_client.exceptions.ResourceNotFoundException) as raised:
        getattr(service_client, operation)(InstanceId=INSTANCE, **kwargs)

    assert error_of(raised) == ("ResourceNotFoundException", 404)
    assert "no-such-" in raised.value.response["Error"]["Message"]


def test_another_instance_is_not_found(connect: RunningConnect) -> None:
    connect_client = client("connect", connect.url)

    with pytest.raises(connect_client.exceptions.ResourceNotFoundException) as raised:
        connect_client.describe_contact(InstanceId="some-other-instance", ContactId=LEG1)

    assert raised.value.response["Error"]["Message"] == "Instance not found: some-other-instance"


@pytest.mark.parametrize(
    ("request_extra", "message"),
    [({"MaxResults": 101}, "MaxResults must be between 1 and 100"), ({"NextToken": "garbage"}, "NextToken")],
)
def test_bad_paging_is_an_invalid_request(
    connect: RunningConnect, request_extra: dict[str, object], message: str
) -> None:
    lens = client("connect-contact-lens", connect.url)

    with pytest.raises(lens.exceptions.InvalidRequestException) as raised:
        lens.list_realtime_contact_analysis_segments(InstanceId=INSTANCE, ContactId=LEG1, **request_extra)

    assert error_of(raised)[1] == 400 and message in raised.value.response["Error"]["Message"]


def test_a_token_for_another_contact_is_refused(connect: RunningConnect) -> None:
    lens = client("connect-contact-lens", connect.url)
    token = lens.list_realtime_contact_analysis_segments(InstanceId=INSTANCE, ContactId=LEG1, MaxResults=1)["NextToken"]

    with pytest.raises(lens.exceptions.InvalidRequestException):
        lens.list_realtime_contact_analysis_segments(InstanceId=INSTANCE, ContactId=LEG2, NextToken=token)


def test_scripted_throttling_is_connects_429_and_the_sdk_retries_through_it(connect: RunningConnect) -> None:
    connect.throttle(1, "DescribeContact")
    bare = client("connect", connect.url)
    with pytest.raises(bare.exceptions.ThrottlingException) as raised:
        bare.describe_contact(InstanceId=INSTANCE, ContactId=LEG1)
    assert error_of(raised) == ("ThrottlingException", 429)

    # Then a throttle for another operation leaves this one alone, and the standard retry mode rides one out
    connect.throttle(1, "DescribeUser")
    assert bare.describe_contact(InstanceId=INSTANCE, ContactId=LEG1)["Contact"]["Id"] == LEG1
    retrying = client("connect", connect.url, max_attempts=3)
    response = retrying.describe_user(InstanceId=INSTANCE, UserId=AGENT1)
    assert response["User"]["Username"] == "priya.s" and response["ResponseMetadata"]["RetryAttempts"] == 1
    assert connect.stats()["DescribeContact"] == {429: 1, 200: 1}
    assert connect.stats()["DescribeUser"] == {429: 1, 200: 1}


def test_throttle_every_nth_request(data: ConnectData) -> None:
    from voicebridge.connect import ConnectOptions

    with start_connect(data, ConnectOptions(throttle_every=3)) as running:
        connect_client = client("connect", running.url)
        outcomes = []
        for _ in range(6):
            try:
                connect_client.describe_user(InstanceId=INSTANCE, UserId=AGENT1)
                outcomes.append(200)
            except connect_client.exceptions.ThrottlingException:
                outcomes.append(429)

    assert outcomes == [200, 200, 429, 200, 200, 429]


def test_delivered_segments_grow_as_records_arrive_once_each(data: ConnectData) -> None:
    # Given a stand-in whose segments are what the stream has delivered so far (replay feeds it), then the file's
    delivered = DeliveredSegments()
    event = {"ContactId": LEG2, "EventType": "SEGMENTS"}
    utterance = {"Utterance": {"Id": "u-1", "TranscriptId": "t-1", "PartialContent": "li"}}
    categories = {"Categories": {"MatchedCategories": ["Transfer"], "MatchedDetails": {}}}
    with start_connect(data, segments=combined(delivered, data.file_segments)) as running:
        lens = client("connect-contact-lens", running.url)

        def page(token: str | None = None) -> dict[str, Any]:
            extra = {"NextToken": token} if token else {}
            result: dict[str, Any] = lens.list_realtime_contact_analysis_segments(
                InstanceId=INSTANCE, ContactId=LEG2, **extra
            )
            return result

        before = page()
        delivered.deliver("100", {**event, "EventType": "STARTED"})
        delivered.deliver("101", {**event, "Segments": [utterance, transcript(1)]})
        live = page()
        delivered.deliver("101", {**event, "Segments": [utterance, transcript(1)]})  # a redelivered record
        delivered.deliver("102", {**event, "Segments": [transcript(2), categories]})
        later = page(live["NextToken"])
        delivered.deliver("103", {**event, "EventType": "COMPLETED"})
        ended = page(later["NextToken"])
        whole = page()
        from_file = lens.list_realtime_contact_analysis_segments(InstanceId=INSTANCE, ContactId=LEG1)

    # Then: the file's known contact without segments before; each record once, no Utterance (the API has none)
    assert before["Segments"] == [] and "NextToken" not in before
    assert live["Segments"] == [transcript(1)]
    # while the analysis goes on every answer has a NextToken, and it picks up exactly what came since
    assert later["Segments"] == [transcript(2), categories] and later["NextToken"]
    # once COMPLETED arrived the last page has none: the analysis is over
    assert ended["Segments"] == [] and "NextToken" not in ended
    assert whole["Segments"] == [transcript(1), transcript(2), categories] and "NextToken" not in whole
    assert len(from_file["Segments"]) == 7 and "NextToken" not in from_file


def test_delivered_segments_read_lambda_kinesis_records_and_skip_poison() -> None:
    import base64

    delivered = DeliveredSegments()
    event = {"ContactId": LEG1, "EventType": "SEGMENTS", "Segments": [transcript(3)]}
    records = [
        {"kinesis": {"sequenceNumber": "1", "data": base64.b64encode(json.dumps(event).encode()).decode()}},
        {"kinesis": {"sequenceNumber": "2", "data": "not base64!"}},
        {"kinesis": {"sequenceNumber": "3", "data": base64.b64encode(b"[1, 2]").decode()}},
    ]

    delivered.deliver_kinesis(records)

    held = delivered(LEG1)
    assert held is not None and list(held.segments) == [transcript(3)] and not held.completed
    assert delivered(LEG2) is None


def test_unknown_routes_and_bad_bodies_get_connects_error_shape(connect: RunningConnect) -> None:
    unknown = requests.get(f"{connect.url}/no/such/operation", timeout=5)
    bad_json = requests.post(f"{connect.url}/realtime-contact-analysis/analysis-segments", data=b"{not json", timeout=5)

    assert unknown.status_code == 404 and unknown.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert bad_json.status_code == 400 and bad_json.headers["x-amzn-ErrorType"] == "SerializationException"
    assert set(bad_json.json()) == {"Message"} and bad_json.headers["x-amzn-RequestId"]
