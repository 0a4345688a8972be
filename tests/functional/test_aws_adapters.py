"""The AWS adapters against moto (DynamoDB, SQS, Secrets Manager) and botocore Stubber (throttling, Connect).

moto lacks DescribeContact, GetContactAttributes and DescribeUser (tooling-notes.md): the Connect adapter runs on a
real ``boto3.client("connect")`` with a Stubber, which also validates our parameters against the service model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from bridge.adapters.connect import ConnectDirectoryClient
from bridge.adapters.dynamodb import DynamoContactStore, to_item
from bridge.adapters.parking import SqsParking
from bridge.adapters.secrets import SecretCredentials
from bridge.errors import (
    ConfigurationError,
    ConnectLookupError,
    ConnectThrottledError,
    ContactConflictError,
    ContactStoreUnavailableError,
    RetryableError,
)
from bridge.models import ContactState, ContactStatus, PendingEntry, SentSet
from bridge.ports import ContactDetails, ParkedItem
from voicebridge.template import contact_table_create_kwargs

pytestmark = pytest.mark.functional

TABLE = "contacts-under-test"
REGION = "us-east-1"
NOW = 1_767_600_000
INSTANCE = "11111111-2222-3333-4444-555555555555"
SEQUENCE = "49590338271490256608559692538361571095921575989136588898"
DYNAMODB_ITEM_LIMIT = 400 * 1024
SQS_MESSAGE_LIMIT = 256 * 1024


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(**contact_table_create_kwargs(table_name=TABLE))
    return client


@pytest.fixture
def store(dynamodb: Any) -> DynamoContactStore:
    return DynamoContactStore(dynamodb, TABLE, ttl_days=7, sleep=lambda _: None)


def segment_ids(count: int, prefix: str = "seg") -> list[str]:
    return [f"{prefix}-{i:05d}-6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b" for i in range(count)]


def full_state(contact_id: str, sent: int, pending: int) -> ContactState:
    ids = segment_ids(sent + pending)
    return ContactState(
        contact_id=contact_id,
        status=ContactStatus.OPEN,
        version=1,
        instance_id=INSTANCE,
        interaction_id="0123456789abcdef0123456789abcdef",
        conversation_id="fedcba9876543210fedcba9876543210",
        sent=SentSet().with_ids(ids[:sent]),
        pending=tuple(PendingEntry(i, SEQUENCE) for i in ids[sent:]),
        close_sequence_number=SEQUENCE,
        max_offset_millis=8 * 3600 * 1000,
        created_at=NOW,
        updated_at=NOW + 60,
        expires_at=NOW + 7 * 86400,
    )


def attribute_size(value: dict[str, Any]) -> int:
    """DynamoDB's documented sizing: UTF-8 strings, raw binary, numbers at most 21 bytes, 3 bytes per list/map."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "B":
        return len(inner)
    if kind == "N":
        return 21
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + 1 + attribute_size(v) for k, v in inner.items())
    raise AssertionError(f"unexpected attribute type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


# --- DynamoContactStore ----------------------------------------------------------------------------------------


def test_table_comes_from_the_template(dynamodb: Any) -> None:
    description = dynamodb.describe_table(TableName=TABLE)["Table"]
    assert description["KeySchema"] == [{"AttributeName": "contact_id", "KeyType": "HASH"}]


def test_claim_twice_is_a_conflict(store: DynamoContactStore) -> None:
    claimed = store.claim("c-1", INSTANCE, NOW)
    assert (claimed.status, claimed.version, claimed.expires_at) == (ContactStatus.CLAIMED, 1, NOW + 7 * 86400)

    with pytest.raises(ContactConflictError) as caught:
        store.claim("c-1", INSTANCE, NOW + 1)
    assert isinstance(caught.value, RetryableError)
    assert store.load_many(["c-1"]) == {"c-1": claimed}


def test_save_with_the_wrong_version_is_a_conflict(store: DynamoContactStore) -> None:
    claimed = store.claim("c-1", INSTANCE, NOW)
    opened = store.save(claimed.evolve(status=ContactStatus.OPEN, interaction_id="a" * 32), expected_version=1)
    assert opened.version == 2

    with pytest.raises(ContactConflictError):
        store.save(claimed.evolve(status=ContactStatus.CLOSED), expected_version=1)  # a stale copy
    assert store.load_many(["c-1"])["c-1"] == opened
    assert store.calls["PutItem"] == 3


def test_load_many_of_250_contacts_takes_three_batch_gets(store: DynamoContactStore) -> None:
    ids = [f"contact-{i:03d}" for i in range(250)]
    for contact_id in ids[::2]:
        store.claim(contact_id, INSTANCE, NOW)

    loaded = store.load_many([*ids, *ids[:10]])  # duplicates are asked for once

    assert sorted(loaded) == ids[::2]
    assert store.calls["BatchGetItem"] == 3


def test_load_many_of_nothing_makes_no_call(store: DynamoContactStore) -> None:
    assert store.load_many([]) == {}
    assert store.calls["BatchGetItem"] == 0


def test_a_state_round_trips_exactly(store: DynamoContactStore) -> None:
    state = full_state("c-full", sent=10_000, pending=25)
    store.claim("c-full", INSTANCE, NOW)

    saved = store.save(state, expected_version=1)

    loaded = store.load_many(["c-full"])["c-full"]
    assert loaded == saved == state.evolve(version=2)
    assert len(loaded.sent) == 10_000 and "seg-09999-6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b" in loaded.sent
    assert "seg-10000-6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b" not in loaded.sent  # pending, not sent
    assert loaded.pending[0] == PendingEntry("seg-10000-6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b", SEQUENCE)


def test_a_claimed_state_round_trips_with_empty_sets(store: DynamoContactStore) -> None:
    claimed = store.claim("c-new", "", NOW)
    loaded = store.load_many(["c-new"])["c-new"]
    assert loaded == claimed
    assert loaded.interaction_id is None and len(loaded.sent) == 0 and loaded.pending == ()


def test_an_eight_hour_call_fits_a_dynamodb_item(store: DynamoContactStore) -> None:
    # ~6,000 final turns in 8 hours, and a full batch of unconfirmed segments still pending.
    state = full_state("c-8h", sent=6_000, pending=500)
    item = to_item(state)
    assert len(item["sent"]["B"]) == 6_000 * 8  # 8 bytes per sent id, whatever the id's length
    assert item_size(item) < DYNAMODB_ITEM_LIMIT / 2, item_size(item)

    store.claim("c-8h", INSTANCE, NOW)
    saved = store.save(state, expected_version=1)  # DynamoDB (moto) itself accepts the item
    assert store.load_many(["c-8h"])["c-8h"] == saved


def test_a_missing_table_is_a_configuration_error_naming_contact_table(aws: None) -> None:
    missing = DynamoContactStore(boto3.client("dynamodb", region_name=REGION), "no-such-table")
    with pytest.raises(ConfigurationError, match="CONTACT_TABLE 'no-such-table'.*ResourceNotFoundException"):
        missing.load_many(["c-1"])
    with pytest.raises(ConfigurationError, match="CONTACT_TABLE"):
        missing.claim("c-1", INSTANCE, NOW)


# --- DynamoDB throttling, through Stubber ------------------------------------------------------------------------


@pytest.fixture
def stubbed_dynamodb() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("dynamodb", region_name=REGION)
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def keys(*contact_ids: str) -> dict[str, Any]:
    return {TABLE: {"Keys": [{"contact_id": {"S": c}} for c in contact_ids], "ConsistentRead": True}}


def test_throughput_exceeded_is_unavailable(stubbed_dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed_dynamodb
    stubber.add_client_error("batch_get_item", "ProvisionedThroughputExceededException", http_status_code=400)
    stubber.add_client_error("put_item", "ThrottlingException", http_status_code=400)
    store = DynamoContactStore(client, TABLE)

    with pytest.raises(ContactStoreUnavailableError, match="ProvisionedThroughputExceededException") as caught:
        store.load_many(["c-1"])
    assert isinstance(caught.value, RetryableError)
    with pytest.raises(ContactStoreUnavailableError, match="ThrottlingException"):
        store.claim("c-1", INSTANCE, NOW)


def test_unprocessed_keys_are_retried_then_resolved(stubbed_dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed_dynamodb
    first = to_item(ContactState("c-1", ContactStatus.OPEN, 3))
    second = to_item(ContactState("c-2", ContactStatus.CLAIMED, 1))
    stubber.add_response(
        "batch_get_item",
        {"Responses": {TABLE: [first]}, "UnprocessedKeys": keys("c-2")},
        {"RequestItems": keys("c-1", "c-2")},
    )
    stubber.add_response("batch_get_item", {"Responses": {TABLE: [second]}}, {"RequestItems": keys("c-2")})
    waits: list[float] = []
    store = DynamoContactStore(client, TABLE, sleep=waits.append)

    loaded = store.load_many(["c-1", "c-2"])

    assert {cid: (s.status, s.version) for cid, s in loaded.items()} == {
        "c-1": (ContactStatus.OPEN, 3),
        "c-2": (ContactStatus.CLAIMED, 1),
    }
    assert waits == [0.05] and store.calls["BatchGetItem"] == 2


def test_keys_unprocessed_every_round_are_unavailable(stubbed_dynamodb: tuple[Any, Stubber]) -> None:
    client, stubber = stubbed_dynamodb
    for _ in range(3):
        stubber.add_response("batch_get_item", {"Responses": {TABLE: []}, "UnprocessedKeys": keys("c-1")})
    waits: list[float] = []
    store = DynamoContactStore(client, TABLE, sleep=waits.append, max_unprocessed_rounds=2)

    with pytest.raises(ContactStoreUnavailableError, match="unprocessed"):
        store.load_many(["c-1"])
    assert waits == [0.05, 0.1]


# --- SqsParking ----------------------------------------------------------------------------------------------------


@pytest.fixture
def sqs(aws: None) -> Any:
    return boto3.client("sqs", region_name=REGION)


@pytest.fixture
def queue_url(sqs: Any) -> str:
    url: str = sqs.create_queue(QueueName="voicebridge-parking")["QueueUrl"]
    return url


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    ):
        messages.extend(batch)
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return messages


def raw_record(index: int, data_bytes: int = 40) -> dict[str, Any]:
    return {
        "sequenceNumber": str(49590338271490256608559692538361571095921575989136588898 + index),
        "partitionKey": "c-1",
        "approximateArrivalTimestamp": 1767600000.5 + index,
        "data": "QUJD" * (data_bytes // 4),
    }


def test_parked_items_carry_reason_contact_error_and_raw_records(sqs: Any, queue_url: str) -> None:
    error = {"error_class": "ServiceNowRejectedError", "status": 404, "transaction_id": "txn-9"}
    items = [
        ParkedItem("servicenow_rejected", "post_messages status=404", (raw_record(0), raw_record(1)), "c-1", error),
        ParkedItem("invalid_json", "record is not JSON", (raw_record(2),)),
    ]
    parking = SqsParking(sqs, queue_url)

    parking.park(items)

    messages = sorted(drain(sqs, queue_url), key=lambda m: json.loads(m["Body"])["reason_class"])
    assert len(messages) == 2 and parking.calls == 1
    invalid, rejected = (json.loads(m["Body"]) for m in messages)
    assert rejected["reason_class"] == "servicenow_rejected" and rejected["contact_id"] == "c-1"
    assert rejected["reason"] == "post_messages status=404" and rejected["error"] == error
    assert rejected["records"] == [raw_record(0), raw_record(1)]
    assert (rejected["part"], rejected["parts"], rejected["schema"]) == (1, 1, 1)
    assert invalid["contact_id"] is None and invalid["records"] == [raw_record(2)]
    attributes = {m["MessageAttributes"]["reason_class"]["StringValue"]: m["MessageAttributes"] for m in messages}
    assert attributes["servicenow_rejected"]["contact_id"] == {"StringValue": "c-1", "DataType": "String"}
    assert "contact_id" not in attributes["invalid_json"]


def test_an_item_with_many_large_records_is_split_into_parts(sqs: Any, queue_url: str) -> None:
    records = tuple(raw_record(i, data_bytes=60_000) for i in range(40))  # ~2.4 MB of records
    parking = SqsParking(sqs, queue_url)

    parking.park([ParkedItem("ambiguous", "too many retries", records, "c-1", {"status": 500})])

    bodies = sorted((json.loads(m["Body"]) for m in drain(sqs, queue_url)), key=lambda b: b["part"])
    assert len(bodies) > 10  # more parts than fit one SendMessageBatch
    assert all(len(json.dumps(b).encode()) < SQS_MESSAGE_LIMIT for b in bodies)
    assert [b["part"] for b in bodies] == list(range(1, len(bodies) + 1))
    assert {b["parts"] for b in bodies} == {len(bodies)}
    assert all(b["reason_class"] == "ambiguous" and b["contact_id"] == "c-1" for b in bodies)
    assert [r for b in bodies for r in b["records"]] == list(records)  # every record once, in order
    # ~180 KB parts: two never share one 256 KiB SendMessageBatch; only the last, one-record part fits with one.
    assert parking.calls == len(bodies) - 1


def test_small_items_are_sent_ten_to_a_batch(sqs: Any, queue_url: str) -> None:
    parking = SqsParking(sqs, queue_url)
    parking.park([ParkedItem("invalid_json", "x", (raw_record(i),), f"c-{i}") for i in range(25)])
    assert parking.calls == 3
    assert len(drain(sqs, queue_url)) == 25


def test_a_missing_queue_is_a_configuration_error(sqs: Any) -> None:
    missing = f"https://sqs.{REGION}.amazonaws.com/123456789012/no-such-queue"
    with pytest.raises(ConfigurationError, match="PARKING_QUEUE_URL"):
        SqsParking(sqs, missing).park([ParkedItem("invalid_json", "x", (raw_record(0),))])


# --- SecretCredentials through Powertools --------------------------------------------------------------------------


@pytest.fixture
def secrets(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name=REGION)


def secret(client: Any, value: str, name: str = "voicebridge/servicenow") -> str:
    arn: str = client.create_secret(Name=name, SecretString=value)["ARN"]
    return arn


def test_basic_auth_secret(secrets: Any) -> None:
    arn = secret(secrets, json.dumps({"username": "bridge", "password": "pw-1"}))
    credentials = SecretCredentials(arn).get()
    assert (credentials.username, credentials.password, credentials.oauth) == ("bridge", "pw-1", False)
    assert "pw-1" not in repr(credentials)


def test_oauth_secret_with_and_without_a_user(secrets: Any) -> None:
    client_only = secret(secrets, json.dumps({"client_id": "voicebridge", "client_secret": "s3"}), "oauth-client")
    with_user = secret(
        secrets,
        json.dumps({"client_id": "voicebridge", "client_secret": "s3", "username": "bridge", "password": "pw"}),
        "oauth-user",
    )
    first = SecretCredentials(client_only).get()
    assert first.oauth and (first.client_id, first.client_secret, first.username) == ("voicebridge", "s3", "")
    second = SecretCredentials(with_user).get()
    assert second.oauth and (second.username, second.password) == ("bridge", "pw")


def test_a_rotated_secret_is_seen_only_on_a_forced_read(secrets: Any) -> None:
    arn = secret(secrets, json.dumps({"username": "bridge", "password": "pw-1"}))
    provider = SecretCredentials(arn)
    assert provider.get().password == "pw-1"

    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "bridge", "password": "pw-2"}))

    assert provider.get().password == "pw-1"  # cached
    assert provider.get(force=True).password == "pw-2"


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("hunter2-not-json", "is not a JSON object"),
        (json.dumps(["hunter2-list"]), "is not a JSON object"),
        (json.dumps({"username": "bridge"}), "must hold username and password"),
        (json.dumps({"password": "hunter2-alone"}), "must hold username and password"),
        (json.dumps({"client_id": "voicebridge", "password": "hunter2-x"}), "has client_id but no client_secret"),
    ],
)
def test_a_malformed_secret_names_what_is_missing_never_the_value(secrets: Any, value: str, named: str) -> None:
    arn = secret(secrets, value)
    with pytest.raises(ConfigurationError, match=named) as caught:
        SecretCredentials(arn).get()
    message = str(caught.value)
    assert arn in message and "hunter2" not in message


def test_a_missing_secret_is_a_configuration_error(aws: None) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:missing-AbCdEf"
    with pytest.raises(ConfigurationError, match="SERVICENOW_SECRET_ARN.*ResourceNotFoundException"):
        SecretCredentials(arn).get()


@pytest.mark.parametrize("code", ["ThrottlingException", "InternalServiceError"])
def test_secrets_manager_throttling_is_retryable_not_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    client = boto3.client("secretsmanager", region_name=REGION)
    monkeypatch.setitem(DEFAULT_PROVIDERS, "secrets", SecretsProvider(boto3_client=client))
    with Stubber(client) as stubber:
        stubber.add_client_error("get_secret_value", code, http_status_code=400)
        with pytest.raises(RetryableError, match=code) as caught:
            SecretCredentials("voicebridge/servicenow").get()
    assert not isinstance(caught.value, ConfigurationError)


# --- ConnectDirectoryClient through Stubber --------------------------------------------------------------------


@pytest.fixture
def connect() -> Iterator[tuple[ConnectDirectoryClient, Stubber]]:
    client = boto3.client("connect", region_name=REGION)
    with Stubber(client) as stubber:
        yield ConnectDirectoryClient(client), stubber
        stubber.assert_no_pending_responses()


def describe(contact: dict[str, Any]) -> dict[str, Any]:
    return {"Contact": {"Id": "c-1", "InitialContactId": "c-1", "Channel": "VOICE", **contact}}


def test_describe_contact_reads_customer_agent_and_recording(connect: tuple[ConnectDirectoryClient, Stubber]) -> None:
    directory, stubber = connect
    stubber.add_response(
        "describe_contact",
        describe(
            {
                "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+14155550100"},
                "AgentInfo": {"Id": "agent-1"},
                "Recordings": [
                    {"Location": "connect-bucket/recordings/c-1.wav", "MediaStreamType": "AUDIO"},
                    {"Location": "connect-bucket/recordings/c-1-2.wav"},
                ],
            }
        ),
        {"InstanceId": INSTANCE, "ContactId": "c-1"},
    )
    assert directory.describe_contact(INSTANCE, "c-1") == ContactDetails(
        "+14155550100", "agent-1", "connect-bucket/recordings/c-1.wav", initial_contact_id="c-1"
    )


def test_describe_contact_of_a_young_or_anonymous_contact(connect: tuple[ConnectDirectoryClient, Stubber]) -> None:
    directory, stubber = connect
    stubber.add_response("describe_contact", describe({}))
    stubber.add_response(
        "describe_contact", describe({"CustomerEndpoint": {"Type": "VOIP", "Address": "sip:someone@example.com"}})
    )
    assert directory.describe_contact(INSTANCE, "c-1") == ContactDetails(initial_contact_id="c-1")
    assert directory.describe_contact(INSTANCE, "c-1").customer_number is None  # only phone numbers are callers


def test_contact_attributes(connect: tuple[ConnectDirectoryClient, Stubber]) -> None:
    directory, stubber = connect
    stubber.add_response(
        "get_contact_attributes",
        {"Attributes": {"CallerNumber": "+14155550100", "Tier": "gold"}},
        {"InstanceId": INSTANCE, "InitialContactId": "c-1"},
    )
    stubber.add_response("get_contact_attributes", {})
    assert directory.contact_attributes(INSTANCE, "c-1") == {"CallerNumber": "+14155550100", "Tier": "gold"}
    assert directory.contact_attributes(INSTANCE, "c-1") == {}


def test_agent_username(connect: tuple[ConnectDirectoryClient, Stubber]) -> None:
    directory, stubber = connect
    stubber.add_response(
        "describe_user", {"User": {"Id": "agent-1", "Username": "beth"}}, {"InstanceId": INSTANCE, "UserId": "agent-1"}
    )
    stubber.add_response("describe_user", {"User": {"Id": "agent-2"}})
    assert directory.agent_username(INSTANCE, "agent-1") == "beth"
    assert directory.agent_username(INSTANCE, "agent-2") is None


@pytest.mark.parametrize("operation", ["describe_contact", "get_contact_attributes", "describe_user"])
def test_throttling_is_retryable(connect: tuple[ConnectDirectoryClient, Stubber], operation: str) -> None:
    directory, stubber = connect
    stubber.add_client_error(operation, "ThrottlingException", http_status_code=429)
    call = {
        "describe_contact": lambda: directory.describe_contact(INSTANCE, "c-1"),
        "get_contact_attributes": lambda: directory.contact_attributes(INSTANCE, "c-1"),
        "describe_user": lambda: directory.agent_username(INSTANCE, "agent-1"),
    }[operation]
    with pytest.raises(ConnectThrottledError, match="ThrottlingException") as caught:
        call()
    assert isinstance(caught.value, RetryableError)


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException"])
def test_other_connect_errors_are_lookup_errors(connect: tuple[ConnectDirectoryClient, Stubber], code: str) -> None:
    directory, stubber = connect
    stubber.add_client_error("describe_contact", code, http_status_code=403)
    with pytest.raises(ConnectLookupError, match=code) as caught:
        directory.describe_contact(INSTANCE, "c-1")
    assert not isinstance(caught.value, ConnectThrottledError)


def test_associated_contacts_follow_next_tokens(connect: tuple[ConnectDirectoryClient, Stubber]) -> None:
    directory, stubber = connect
    stubber.add_response(
        "list_associated_contacts",
        {"ContactSummaryList": [{"ContactId": "c-1", "InitiationMethod": "INBOUND"}], "NextToken": "t"},
        {"InstanceId": INSTANCE, "ContactId": "c-1", "MaxResults": 100},
    )
    stubber.add_response(
        "list_associated_contacts",
        {"ContactSummaryList": [{"ContactId": "c-2", "InitiationMethod": "TRANSFER"}]},
        {"InstanceId": INSTANCE, "ContactId": "c-1", "MaxResults": 100, "NextToken": "t"},
    )
    legs = directory.associated_contacts(INSTANCE, "c-1")
    assert [(leg.contact_id, leg.initiation_method) for leg in legs] == [("c-1", "INBOUND"), ("c-2", "TRANSFER")]
