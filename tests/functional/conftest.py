"""Functional fixtures: the real handler in process, AWS through moto, ServiceNow through the emulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from voicebridge.emulator import EmulatorOptions, RunningEmulator, start_emulator
from voicebridge.feed.replay import ReplayContext, ServiceNowTarget, ensure_resources, offline_handler_environment


@dataclass
class Stack:
    """One deployed-like bridge: emulator + moto resources + the environment the handler reads."""

    emulator: RunningEmulator
    environment: dict[str, str]
    auth: tuple[str, str] = ("admin", "admin")

    def invoke(self, records: list[dict[str, Any]], timeout_s: float = 60.0) -> dict[str, Any]:
        from bridge.handler import lambda_handler

        response: dict[str, Any] = lambda_handler({"Records": records}, ReplayContext(timeout_s))
        return response

    def table(self, name: str, query: str = "") -> list[dict[str, str]]:
        response = requests.get(
            f"{self.emulator.url}/api/now/table/{name}", params={"sysparm_query": query}, auth=self.auth, timeout=10
        )
        response.raise_for_status()
        rows: list[dict[str, str]] = response.json()["result"]
        return rows

    def interactions(self, contact_id: str) -> list[dict[str, str]]:
        return self.table("interaction", f"client_session_id={contact_id}")

    def messages(self, contact_id: str) -> list[dict[str, str]]:
        (interaction,) = self.interactions(contact_id)
        conversation = interaction["channel_metadata_document"]
        return self.table("sys_cs_message", f"conversation={conversation}^ORDERBYsequence")

    def transcript_ids(self, contact_id: str) -> list[str]:
        return [m["source_message_id"] for m in self.messages(contact_id) if m["is_internal"] != "true"]

    def parked(self) -> list[dict[str, Any]]:
        import boto3

        sqs = boto3.client("sqs")
        bodies = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.environment["PARKING_QUEUE_URL"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return bodies
            for message in batch:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.environment["PARKING_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"]
                )


@pytest.fixture
def emulator_options() -> EmulatorOptions:
    return EmulatorOptions()


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, emulator_options: EmulatorOptions) -> Iterator[Stack]:
    from moto import mock_aws

    from bridge import factory

    with start_emulator(emulator_options) as emulator, mock_aws():
        target = ServiceNowTarget(emulator.url, emulator_options.user, emulator_options.password)
        environment = ensure_resources("contacts", target)
        # SERVICENOW_SETTLE_SECONDS 2: the scripted late applies in these tests land within 1.5 s (default 10 s).
        environment.update(offline_handler_environment("voicebridge-tests"), SERVICENOW_SETTLE_SECONDS="2")
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        factory.reset()
        yield Stack(emulator, environment)
        factory.reset()
