"""The bridge's processing over in-memory fakes (tests/fakes.py): no network, no AWS, no HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import FakeConnect, FakeContactStore, FakeParking, FakeServiceNow

from benchmarks.naive import NaiveBridge
from bridge.config import AgentLookup, CallerLookup, Settings
from bridge.directory import ContactDirectory
from bridge.processor import BatchProcessor, BatchResult
from bridge.runner import ContactRunner, RunnerOptions

SETTINGS = Settings(
    "https://example.service-now.com",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
    "contacts",
    "https://sqs.us-east-1.amazonaws.com/123456789012/parking",
    connect_instance_alias="example",
    caller_lookup=CallerLookup.NONE,
    agent_lookup=AgentLookup.NONE,
)


@dataclass
class FakeWorld:
    """The real BatchProcessor + ContactRunner wired to fakes, like tests/unit/test_processor.py."""

    max_workers: int = 8
    servicenow: FakeServiceNow = field(default_factory=FakeServiceNow)
    store: FakeContactStore = field(default_factory=FakeContactStore)
    parking: FakeParking = field(default_factory=FakeParking)

    def __post_init__(self) -> None:
        runner = ContactRunner(self.servicenow, self.store, ContactDirectory(SETTINGS, FakeConnect()), RunnerOptions())
        executor = ThreadPoolExecutor(self.max_workers) if self.max_workers > 1 else None
        self.processor = BatchProcessor(self.store, runner, self.parking, executor)

    def process(self, records: list[dict[str, Any]]) -> BatchResult:
        return self.processor.process(records, deadline=time.monotonic() + 60)

    def close(self) -> None:
        if isinstance(self.processor.executor, ThreadPoolExecutor):
            self.processor.executor.shutdown()


@dataclass
class NaiveWorld:
    servicenow: FakeServiceNow = field(default_factory=FakeServiceNow)
    store: FakeContactStore = field(default_factory=FakeContactStore)

    def __post_init__(self) -> None:
        self.bridge = NaiveBridge(self.servicenow, self.store)

    def process(self, records: list[dict[str, Any]]) -> None:
        self.bridge.process(records)


def quiet_logs() -> None:
    """Keep the bridge's log lines formatted at their production level (INFO) but written nowhere."""
    import os

    from bridge.log import logger

    handler = logger.registered_handler
    if isinstance(handler, __import__("logging").StreamHandler):
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


@dataclass
class WireWorld:
    """The same BatchProcessor + ContactRunner over the real adapters on a stubbed wire (benchmarks.wire)."""

    max_workers: int = 8

    def __post_init__(self) -> None:
        from benchmarks.wire import CannedServiceNow, DynamoWire, contact_store, servicenow_client

        self.transport = CannedServiceNow()
        self.wire = DynamoWire()
        self.servicenow = servicenow_client(self.transport, pool_size=self.max_workers)
        self.store = contact_store(self.wire)
        runner = ContactRunner(self.servicenow, self.store, ContactDirectory(SETTINGS, FakeConnect()), RunnerOptions())
        executor = ThreadPoolExecutor(self.max_workers) if self.max_workers > 1 else None
        self.processor = BatchProcessor(self.store, runner, FakeParking(), executor)

    def process(self, records: list[dict[str, Any]]) -> BatchResult:
        return self.processor.process(records, deadline=time.monotonic() + 60)

    def close(self) -> None:
        if isinstance(self.processor.executor, ThreadPoolExecutor):
            self.processor.executor.shutdown()

    @property
    def stub_cpu_s(self) -> float:
        return self.transport.cpu_s + self.wire.cpu_s


@dataclass
class NaiveWireWorld:
    """The naive baseline's per-segment requests through the same real clients on the same stubbed wire."""

    def __post_init__(self) -> None:
        from benchmarks.wire import CannedServiceNow, DynamoWire, contact_store, servicenow_client

        self.transport = CannedServiceNow()
        self.wire = DynamoWire()
        self.bridge = NaiveBridge(
            servicenow_client(self.transport, pool_size=1), contact_store(self.wire, production_options=False)
        )

    def process(self, records: list[dict[str, Any]]) -> None:
        self.bridge.process(records)

    @property
    def stub_cpu_s(self) -> float:
        return self.transport.cpu_s + self.wire.cpu_s
