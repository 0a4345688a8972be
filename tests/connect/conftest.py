"""Fixtures for the Amazon Connect stand-in's tests: a transferred call's data and a started stand-in (port 0)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from voicebridge.connect import ConnectData, RunningConnect, start_connect
from voicebridge.connect.data import parse_connect_data

INSTANCE = "0f4c2a7e-3b1d-4e5f-8a9b-6c7d8e9f0a1b"
LEG1 = "11111111-1111-4111-8111-111111111111"
LEG2 = "22222222-2222-4222-8222-222222222222"
OTHER_CALL = "33333333-3333-4333-8333-333333333333"
AGENT1 = "a1a1a1a1-0000-4000-8000-000000000001"
AGENT2 = "a2a2a2a2-0000-4000-8000-000000000002"
START = 1_764_230_400


def transcript(index: int, participant: str = "AGENT") -> dict[str, Any]:
    return {
        "Transcript": {
            "Id": f"t-{index}",
            "ParticipantId": participant,
            "ParticipantRole": participant,
            "Content": f"line {index}",
            "BeginOffsetMillis": index * 1000,
            "EndOffsetMillis": index * 1000 + 900,
            "Sentiment": "NEUTRAL",
        }
    }


def call_document() -> dict[str, Any]:
    """A warm-transferred call (leg 2 from agent 1 to agent 2) and an unrelated call, as a data file holds them."""
    return {
        "instance_id": INSTANCE,
        "contacts": {
            LEG1: {
                "InitiationMethod": "INBOUND",
                "InitiationTimestamp": START,
                "DisconnectTimestamp": START + 300,
                "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12025550147"},
                "AgentInfo": {"Id": AGENT1, "ConnectedToAgentTimestamp": START + 12.5},
                "Recordings": [{"StorageType": "S3", "Location": "bucket/connect/example/leg1.wav"}],
            },
            LEG2: {
                "InitialContactId": LEG1,
                "PreviousContactId": LEG1,
                "InitiationMethod": "TRANSFER",
                "InitiationTimestamp": START + 200,
                "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12025550147"},
                "AgentInfo": {"Id": AGENT2, "ConnectedToAgentTimestamp": "2025-11-27T08:03:25Z"},
            },
            OTHER_CALL: {"InitiationMethod": "INBOUND", "InitiationTimestamp": START + 50},
        },
        "users": {
            AGENT1: {"Username": "priya.s", "IdentityInfo": {"FirstName": "Priya", "LastName": "Shah"}},
            AGENT2: {"Username": "marco.r"},
        },
        "attributes": {LEG1: {"CallerNumber": "+12025550147", "Tier": "gold"}},
        "segments": {LEG1: [transcript(i) for i in range(7)]},
    }


@pytest.fixture
def data() -> ConnectData:
    return parse_connect_data(call_document())


@pytest.fixture
def connect(data: ConnectData) -> Iterator[RunningConnect]:
    with start_connect(data) as running:
        yield running


def client(service: str, url: str, max_attempts: int = 1) -> Any:
    """A real boto3 client for the stand-in (no retries unless asked: each test sees Connect's own answers)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": max_attempts}),
    )
