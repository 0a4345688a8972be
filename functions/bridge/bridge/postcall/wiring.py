"""Real adapters for the post-call import, built once per container (``bridge.postcall_handler``) or per run
(``voicebridge backfill``): the same code either way. Reads the environment only through the settings loaders."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import AgentLookup, CallerLookup, Settings, load_settings
from bridge.errors import ConfigurationError
from bridge.postcall.aws import ContactTimes, RememberingConnectClient, S3Objects, contact_times
from bridge.postcall.importer import ImportOptions, PostCallImporter
from bridge.postcall.mapping import Redactor, identity
from bridge.postcall.settings import PostCallSettings, load_postcall_settings

SAFETY_MARGIN_SECONDS = 2.0


@dataclass
class PostCallRuntime:
    settings: Settings
    postcall: PostCallSettings
    importer: PostCallImporter
    servicenow: Any
    store: Any
    parking: Any
    objects: S3Objects

    def start_invocation(self, remaining_ms: int) -> None:
        """Bound the ServiceNow client's retries by the invocation's time left."""
        self.servicenow.deadline = time.monotonic() + remaining_ms / 1000.0 - SAFETY_MARGIN_SECONDS


def redactor_for(mode: str) -> Redactor:
    """``REDACT_CONTENT`` as a text -> text function (``bridge.redaction``), identity for ``none``."""
    if mode == "none":
        return identity
    from bridge.redaction import RedactionMode, redactor_for  # its patterns compile only when asked for

    try:
        masker = redactor_for(RedactionMode(mode))
    except ValueError:
        raise ConfigurationError(f"REDACT_CONTENT must be none, pci or pii, got {mode!r}") from None

    def redact(text: str) -> str:
        return masker.redact(text).text

    return redact


def build_runtime(
    environ: Mapping[str, str] | None = None,
    connect_client: Any = None,
    dry_run: bool = False,
    variant: str | None = None,
    credentials: Any = None,
) -> PostCallRuntime:
    """Wire the importer. ``connect_client``: a stand-in for Amazon Connect (backfill ``--connect``); ``variant``
    overrides ``ANALYSIS_VARIANT`` (backfill ``--variant``); ``credentials``: a ``CredentialsProvider`` used instead
    of the Secrets Manager secret (the backfill's ``--user``/``--client-id``, never written anywhere)."""
    import boto3
    from botocore.config import Config

    from bridge.adapters.connect import ConnectDirectoryClient
    from bridge.adapters.dynamodb import DynamoContactStore
    from bridge.adapters.parking import SqsParking
    from bridge.adapters.secrets import SecretCredentials
    from bridge.adapters.servicenow import ServiceNowClient
    from bridge.directory import ContactDirectory
    from bridge.factory import DYNAMODB_CLIENT_OPTIONS, _NoConnect
    from bridge.postcall.keys import AnalysisVariant

    settings = load_settings(environ)
    postcall = load_postcall_settings(environ)
    if variant is not None:
        postcall = PostCallSettings(postcall.transcript_source, AnalysisVariant(variant), "", postcall.redact_content)
    session = boto3.session.Session()
    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=2,
        read_timeout=5,
        max_pool_connections=settings.max_workers + 2,
    )
    store = DynamoContactStore(
        session.client("dynamodb", config=config.merge(Config(**DYNAMODB_CLIENT_OPTIONS))),
        settings.contact_table,
        settings.contact_ttl_days,
    )
    parking = SqsParking(session.client("sqs", config=config), settings.parking_queue_url)
    servicenow = ServiceNowClient(
        settings.servicenow_url,
        credentials or SecretCredentials(settings.servicenow_secret_arn),
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
        pool_size=settings.max_workers,
    )
    lookups = settings.caller_lookup is not CallerLookup.NONE or settings.agent_lookup is not AgentLookup.NONE
    remembering: Any = None
    if connect_client is not None or lookups:
        remembering = RememberingConnectClient(connect_client or session.client("connect", config=config))
    directory = ContactDirectory(settings, ConnectDirectoryClient(remembering) if remembering else _NoConnect())

    def times(instance_id: str, contact_id: str) -> ContactTimes:
        return contact_times(remembering, instance_id, contact_id)

    objects = S3Objects(session.client("s3", config=config))
    importer = PostCallImporter(
        settings,
        objects,
        store,
        servicenow,
        directory,
        parking,
        times,
        ImportOptions(variant=postcall.variant, bucket=postcall.bucket, dry_run=dry_run),
        redactor=redactor_for(postcall.redact_content),
    )
    return PostCallRuntime(settings, postcall, importer, servicenow, store, parking, objects)


_runtime: PostCallRuntime | None = None
_lock = threading.Lock()


def get_runtime() -> PostCallRuntime:
    """The container's importer, built on first use. Raises ConfigurationError naming the bad variable."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def reset() -> None:
    global _runtime
    with _lock:
        _runtime = None
