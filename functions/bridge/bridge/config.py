"""Settings, modelled once: read from the environment on first use, validated with errors that name the variable.

Nothing here runs at import time (tests need no ``reload()``), and nothing that must be set has a silent default.
Credentials never come from the environment: only the *ARN* of the Secrets Manager secret does.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeVar
from urllib.parse import urlsplit

from bridge.errors import ConfigurationError
from bridge.redaction import RedactionMode

DEFAULT_RECORDING_URL_TEMPLATE = "https://{instance_alias}.my.connect.aws/contact-trace-records/details/{contact_id}"
RECORDING_URL_FIELDS = frozenset({"contact_id", "instance_id", "instance_alias", "region", "recording_location"})
E = TypeVar("E", bound=Enum)
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


class CallerLookup(StrEnum):
    """Where the caller's number (ServiceNow ``userId``) comes from."""

    DESCRIBE_CONTACT = "describe_contact"  # DescribeContact -> CustomerEndpoint.Address
    ATTRIBUTE = "attribute"  # a contact attribute set by the flow (GetContactAttributes)
    NONE = "none"  # always the fallback


class AgentLookup(StrEnum):
    """Whether ServiceNow ``agentId`` is looked up (DescribeContact AgentInfo.Id -> DescribeUser Username)."""

    DESCRIBE_USER = "describe_user"
    NONE = "none"


class AgentIdFormat(StrEnum):
    """How a Connect agent becomes a ServiceNow user id (``agentId``: the ``sys_user`` user_name)."""

    AS_IS = "as_is"  # the Connect Username unchanged (SAML-federated instances: the same login on both sides)
    STRIP_DOMAIN = "strip_domain"  # "priya@example.com" or "EXAMPLE\\priya" -> "priya"
    ATTRIBUTE = "attribute"  # a contact attribute the flow sets (AGENT_ID_ATTRIBUTE), e.g. from a Lambda lookup


@dataclass(frozen=True)
class Settings:
    """Every knob of the bridge; built by :func:`load_settings`."""

    servicenow_url: str
    servicenow_secret_arn: str
    contact_table: str
    parking_queue_url: str
    recording_url_template: str = DEFAULT_RECORDING_URL_TEMPLATE
    connect_instance_alias: str = ""
    caller_lookup: CallerLookup = CallerLookup.DESCRIBE_CONTACT
    caller_attribute: str = "CallerNumber"
    fallback_user_id: str = "anonymous"
    agent_lookup: AgentLookup = AgentLookup.DESCRIBE_USER
    agent_id_format: AgentIdFormat = AgentIdFormat.AS_IS
    agent_id_attribute: str = "ServiceNowAgentId"
    inbound_id: str = ""
    forward_notes: bool = True
    redact_content: RedactionMode = RedactionMode.NONE
    max_workers: int = 64
    contact_ttl_days: int = 7
    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    settle_s: float = 10.0
    # How long an invocation may hold the shard when ServiceNow is unavailable for every contact (bounded by the
    # invocation's time; 0 answers at once). Sized with the event source mapping's retries: README "Reliability".
    outage_hold_s: float = 900.0
    parked_marker_days: int = 14
    region: str = "us-east-1"
    xray_sdk: bool = False

    @property
    def api_base(self) -> str:
        """The voice API root (the documented default URL, v1)."""
        return f"{self.servicenow_url}/api/now/v1/cs/voice-interactions"


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"{name} is not set")
    return value


def _int(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 300:
        raise ConfigurationError(f"{name} must be between 0 and 300 seconds, got {value}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _choice(environ: Mapping[str, str], name: str, enum: type[E], default: E) -> E:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        raise ConfigurationError(f"{name} must be one of {allowed}, got {raw!r}") from None


def _servicenow_url(environ: Mapping[str, str]) -> str:
    url = _required(environ, "SERVICENOW_URL").rstrip("/")
    parts = urlsplit(url)
    local = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    # TLS is mandatory for a real instance; plain http only for the local emulator on loopback.
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ConfigurationError(f"SERVICENOW_URL must be an https:// URL, got {url!r}")
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if not parts.hostname or not port_ok:
        raise ConfigurationError(f"SERVICENOW_URL must name a host (https://NAME.service-now.com), got {url!r}")
    # An empty query or fragment ("...com?" / "...com#") would swallow every path appended to the root.
    if parts.path not in ("", "/") or "?" in url or "#" in url:
        raise ConfigurationError(
            f"SERVICENOW_URL must be the instance root (https://NAME.service-now.com), got {url!r}"
        )
    return url


def _recording_template(environ: Mapping[str, str], alias: str) -> str:
    template = environ.get("RECORDING_URL_TEMPLATE", "").strip() or DEFAULT_RECORDING_URL_TEMPLATE
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigurationError(f"RECORDING_URL_TEMPLATE is not a valid template: {exc}") from None
    unknown = fields - RECORDING_URL_FIELDS
    if unknown:
        allowed = ", ".join("{" + name + "}" for name in sorted(RECORDING_URL_FIELDS))
        raise ConfigurationError(f"RECORDING_URL_TEMPLATE uses unknown fields {sorted(unknown)}; allowed: {allowed}")
    if "instance_alias" in fields and not alias:
        raise ConfigurationError("CONNECT_INSTANCE_ALIAS is not set (RECORDING_URL_TEMPLATE uses {instance_alias})")
    return template


_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,61}$")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build and validate :class:`Settings`; raises :class:`ConfigurationError` naming the bad variable."""
    environ = os.environ if environ is None else environ
    alias = environ.get("CONNECT_INSTANCE_ALIAS", "").strip()
    if alias and not _ALIAS.match(alias):
        raise ConfigurationError(f"CONNECT_INSTANCE_ALIAS is not a valid Amazon Connect alias: {alias!r}")
    caller_lookup = _choice(environ, "CALLER_LOOKUP", CallerLookup, CallerLookup.DESCRIBE_CONTACT)
    caller_attribute = environ.get("CALLER_ATTRIBUTE", "").strip() or "CallerNumber"
    fallback = environ.get("FALLBACK_USER_ID", "").strip() or "anonymous"
    return Settings(
        servicenow_url=_servicenow_url(environ),
        servicenow_secret_arn=_required(environ, "SERVICENOW_SECRET_ARN"),
        contact_table=_required(environ, "CONTACT_TABLE"),
        parking_queue_url=_required(environ, "PARKING_QUEUE_URL"),
        recording_url_template=_recording_template(environ, alias),
        connect_instance_alias=alias,
        caller_lookup=caller_lookup,
        caller_attribute=caller_attribute,
        fallback_user_id=fallback,
        agent_lookup=_choice(environ, "AGENT_LOOKUP", AgentLookup, AgentLookup.DESCRIBE_USER),
        agent_id_format=_choice(environ, "AGENT_ID_FORMAT", AgentIdFormat, AgentIdFormat.AS_IS),
        agent_id_attribute=environ.get("AGENT_ID_ATTRIBUTE", "").strip() or "ServiceNowAgentId",
        inbound_id=environ.get("INBOUND_ID", "").strip(),
        forward_notes=_bool(environ, "FORWARD_NOTES", True),
        redact_content=_choice(environ, "REDACT_CONTENT", RedactionMode, RedactionMode.NONE),
        max_workers=_int(environ, "MAX_WORKERS", 64, 1, 64),
        contact_ttl_days=_int(environ, "CONTACT_TTL_DAYS", 7, 1, 365),
        connect_timeout_s=_float(environ, "SERVICENOW_CONNECT_TIMEOUT", 3.05),
        read_timeout_s=_float(environ, "SERVICENOW_READ_TIMEOUT", 10.0),
        settle_s=_float(environ, "SERVICENOW_SETTLE_SECONDS", 10.0),
        outage_hold_s=float(_int(environ, "OUTAGE_HOLD_SECONDS", 900, 0, 900)),
        parked_marker_days=_int(environ, "PARKED_MARKER_DAYS", 14, 1, 365),
        region=environ.get("AWS_REGION", "").strip() or environ.get("AWS_DEFAULT_REGION", "").strip() or "us-east-1",
        xray_sdk=_bool(environ, "VOICEBRIDGE_XRAY_SDK", False),
    )
