"""Build the real adapters once per container, lazily (cold start: boto3 and requests load on first use).

``get_bridge()`` is the only place that reads the environment (through ``load_settings``); ``reset()`` drops the
cache (tests, replay).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bridge.config import AgentLookup, CallerLookup, Settings, load_settings
from bridge.errors import ConfigurationError
from bridge.ports import AssociatedContact, ConnectPort, ContactDetails, ParkedItem
from bridge.processor import BatchProcessor, BatchResult

# Client-side parameter validation off for DynamoDB only: see build_bridge (benchmarks reuse this).
DYNAMODB_CLIENT_OPTIONS = {"parameter_validation": False}
# Stop starting new work this long before Lambda's timeout, so the partial batch response still gets out.
SAFETY_MARGIN_SECONDS = 2.0


@dataclass
class Bridge:
    """The wired bridge: settings, adapters and the batch processor."""

    settings: Settings
    processor: BatchProcessor
    servicenow: Any
    store: Any
    parking: Any

    def process(self, records: Sequence[Any], remaining_ms: int, historical: bool = False) -> BatchResult:
        deadline = time.monotonic() + remaining_ms / 1000.0 - SAFETY_MARGIN_SECONDS
        self.servicenow.deadline = deadline
        return self.processor.process(records, deadline, historical=historical)


class _NoConnect:
    """Lookups disabled: every answer is empty, so the configured fallbacks apply."""

    def describe_contact(self, instance_id: str, contact_id: str) -> ContactDetails:
        return ContactDetails()

    def contact_attributes(self, instance_id: str, contact_id: str) -> Mapping[str, str]:
        return {}

    def agent_username(self, instance_id: str, agent_id: str) -> str | None:
        return None

    def associated_contacts(self, instance_id: str, contact_id: str) -> list[AssociatedContact]:
        return []


class _LazyConnect:
    """Creates the Connect client on the first lookup (its model costs ~50-100 ms to load)."""

    def __init__(self, session: Any, config: Any) -> None:
        self._session = session
        self._config = config
        self._client: Any = None
        self._lock = threading.Lock()

    def _real(self) -> Any:
        with self._lock:
            if self._client is None:
                from bridge.adapters.connect import ConnectDirectoryClient

                self._client = ConnectDirectoryClient(self._session.client("connect", config=self._config))
            return self._client

    def describe_contact(self, instance_id: str, contact_id: str) -> ContactDetails:
        result: ContactDetails = self._real().describe_contact(instance_id, contact_id)
        return result

    def contact_attributes(self, instance_id: str, contact_id: str) -> Mapping[str, str]:
        result: Mapping[str, str] = self._real().contact_attributes(instance_id, contact_id)
        return result

    def agent_username(self, instance_id: str, agent_id: str) -> str | None:
        result: str | None = self._real().agent_username(instance_id, agent_id)
        return result

    def associated_contacts(self, instance_id: str, contact_id: str) -> list[AssociatedContact]:
        result: list[AssociatedContact] = self._real().associated_contacts(instance_id, contact_id)
        return result


def build_bridge(settings: Settings) -> Bridge:
    import boto3
    from botocore.config import Config

    from bridge.adapters.dynamodb import DynamoContactStore
    from bridge.adapters.parking import SqsParking
    from bridge.adapters.secrets import SecretCredentials
    from bridge.adapters.servicenow import ServiceNowClient
    from bridge.directory import ContactDirectory
    from bridge.runner import ContactRunner, RunnerOptions

    if settings.xray_sdk:
        from aws_lambda_powertools import Tracer

        Tracer()  # patches botocore and requests: every AWS and ServiceNow call becomes a subsegment

    session = boto3.session.Session()
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=5,
        max_pool_connections=settings.max_workers + 2,
    )
    # Client-side parameter validation costs ~11 % of the handler's CPU (make bench profile) and checks items our
    # own adapter builds in one fixed shape; DynamoDB validates every request server-side anyway.
    dynamodb_config = config.merge(Config(**DYNAMODB_CLIENT_OPTIONS))
    store = DynamoContactStore(
        session.client("dynamodb", config=dynamodb_config), settings.contact_table, settings.contact_ttl_days
    )
    parking = SqsParking(session.client("sqs", config=config), settings.parking_queue_url)
    servicenow = ServiceNowClient(
        settings.servicenow_url,
        SecretCredentials(settings.servicenow_secret_arn),
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        pool_size=settings.max_workers,
    )
    lookups = settings.caller_lookup is not CallerLookup.NONE or settings.agent_lookup is not AgentLookup.NONE
    connect: ConnectPort = _LazyConnect(session, config) if lookups else _NoConnect()
    runner = ContactRunner(
        servicenow,
        store,
        ContactDirectory(settings, connect),
        RunnerOptions(
            forward_notes=settings.forward_notes,
            redaction=settings.redact_content,
            contact_ttl_days=settings.contact_ttl_days,
            settle_seconds=settings.settle_s,
            late_apply_seconds=settings.read_timeout_s + settings.settle_s,
        ),
    )
    executor = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="contact")
    processor = BatchProcessor(
        store,
        runner,
        parking,
        executor,
        outage_hold_seconds=settings.outage_hold_s,
        parked_marker_days=settings.parked_marker_days,
    )
    return Bridge(settings, processor, servicenow, store, parking)


_bridge: Bridge | None = None
_lock = threading.Lock()


def get_bridge() -> Bridge:
    """The container's bridge, built on first use. Raises ConfigurationError naming the bad variable."""
    global _bridge
    with _lock:
        if _bridge is None:
            _bridge = build_bridge(load_settings())
        return _bridge


def reset() -> None:
    """Forget the cached bridge (tests and replay change the environment between runs)."""
    global _bridge
    with _lock:
        if _bridge is not None and isinstance(_bridge.processor.executor, ThreadPoolExecutor):
            _bridge.processor.executor.shutdown(wait=False)
        _bridge = None


def park_everything(records: Sequence[Any], error: ConfigurationError) -> bool:
    """With the bridge unconfigurable, keep the batch in the parking queue if at least that is configured.

    Returns False when even parking is impossible (the caller then fails the invocation: Kinesis keeps the records).
    """
    queue_url = os.environ.get("PARKING_QUEUE_URL", "").strip()
    if not queue_url:
        return False
    import boto3

    from bridge.adapters.parking import SqsParking
    from bridge.events import raw_record

    parked = [raw_record(r).to_parked() for r in records]
    item = ParkedItem("configuration", str(error), tuple(parked), None, {"error_class": type(error).__name__})
    try:
        SqsParking(boto3.client("sqs"), queue_url).park([item])
    except Exception:  # noqa: BLE001 - any failure here means "could not park": fail the invocation instead
        return False
    return True
