"""``voicebridge smoke --stack STACK``: after ``sam deploy``, is every piece the bridge needs in place?

One line per check, ``✓`` (passed), ``✗`` (failed, with what to do) or ``–`` (not run, and why):

0. with ``--stack``: the stack is CREATE_COMPLETE/UPDATE_COMPLETE (the last deployment applied);
1. the ServiceNow secret reads and holds basic or OAuth credentials (the bridge's own parser);
2. ServiceNow answers with those credentials (the bridge's own client: basic, or an OAuth token);
3. the voice interaction API lets the user create: a probe interaction with clientSessionId
   ``voicebridge-smoke-<uuid>`` (userId ``voicebridge-smoke``), its conversation and one agent-only message, then
   closed. ServiceNow has no delete in this API, so every run leaves one closed probe interaction behind;
   ``--read-only`` skips it;
4. the Table API reads the bridge recovers with (``interaction``, ``sys_cs_conversation``, ``sys_cs_message``)
   find the probe's rows. A forbidden table answers 403, but rows an ACL hides answer 200 with no rows, so only a
   row that is known to exist proves read access; with ``--read-only`` only the 403 case can be seen;
5. the Kinesis event source mapping is enabled, on the stack's stream, with the failure queue as destination;
6. Amazon Connect streams real-time voice segments to that stream (skipped without a Connect instance);
7. the stack's alarms exist; the contact table is ACTIVE;
8. the parking queue and the mapping's on-failure queue are empty.

Exit status: 0 when no check failed, 1 when one did, 2 for bad arguments or an unknown stack (one line on
stderr). Resources come from the stack's outputs (parameters for older stacks); explicit flags override them.
Nothing printed holds a secret or message content.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

PROBE_PREFIX = "voicebridge-smoke-"
PROBE_USER_ID = "voicebridge-smoke"
PROBE_MESSAGE = "voicebridge smoke check: this interaction was created and closed by `voicebridge smoke`."
REAL_TIME_SEGMENTS = "REAL_TIME_CONTACT_ANALYSIS_VOICE_SEGMENTS"
NO_SYS_ID = "0" * 32  # a well-formed sys_id no row has: read-only probes query it
STREAM_ARN = re.compile(r"^arn:aws[a-z-]*:kinesis:[a-z0-9-]+:[0-9]{12}:stream/[A-Za-z0-9_.-]+$")
CONNECT_INSTANCE = re.compile(r"^(?:arn:aws[a-z-]*:connect:[a-z0-9-]+:[0-9]{12}:instance/)?([0-9a-f-]{36})$")
ROLE_FIX = "give the ServiceNow user the role interaction_integration_user (README Deploying, ServiceNow side)"
READ_FIX = (
    "grant the ServiceNow user read on interaction, sys_cs_conversation and sys_cs_message "
    "(README Deploying, ServiceNow side): without it the bridge cannot recover after an ambiguous failure"
)

# Stack outputs (template.yaml) -> Targets field.
STACK_OUTPUTS = {
    "BridgeFunctionName": "function",
    "ServiceNowInstanceUrl": "servicenow_url",
    "ServiceNowSecret": "secret_arn",
    "ContactTableName": "table",
    "ParkingQueueUrl": "parking_queue_url",
    "StreamFailureQueueUrl": "failure_queue_url",
    "SegmentStream": "stream_arn",
    "ConnectInstance": "connect_instance_id",
    "AlarmNames": "alarm_names",
}
# Stacks deployed before those outputs existed: the template parameters that hold the same values.
STACK_PARAMETERS = {
    "ServiceNowUrl": "servicenow_url",
    "ServiceNowSecretArn": "secret_arn",
    "SegmentStreamArn": "stream_arn",
    "ConnectInstanceArn": "connect_instance_id",
}


class SmokeArgumentError(ValueError):
    """A bad flag or an unknown stack: one line on stderr, exit 2."""


class Status(StrEnum):
    PASSED = "✓"
    FAILED = "✗"
    SKIPPED = "–"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value} {self.name}: {self.detail}"
        return f"{text} — {self.fix}" if self.fix and self.status is Status.FAILED else text


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.PASSED, detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAILED, detail, fix)


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, Status.SKIPPED, f"not checked ({reason})")


@dataclass(frozen=True)
class Targets:
    """What to check; any field left empty skips the checks that need it."""

    stack: str | None = None
    stack_status: str | None = None
    function: str | None = None
    servicenow_url: str | None = None
    secret_arn: str | None = None
    table: str | None = None
    parking_queue_url: str | None = None
    failure_queue_url: str | None = None
    stream_arn: str | None = None
    connect_instance_id: str | None = None
    alarm_names: tuple[str, ...] = ()

    def overridden_by(self, other: Targets) -> Targets:
        """These targets with every field ``other`` sets replaced."""
        changes = {name: value for name, value in vars(other).items() if value}
        return replace(self, **changes)


@dataclass
class Clients:
    """The AWS clients smoke uses (tests pass moto-backed or stubbed ones)."""

    cloudformation: Any
    secretsmanager: Any
    lambda_: Any
    connect: Any
    cloudwatch: Any
    sqs: Any
    dynamodb: Any

    @classmethod
    def from_environment(cls, region: str | None = None) -> Clients:
        import boto3

        session = boto3.session.Session(region_name=region)
        return cls(
            cloudformation=session.client("cloudformation"),
            secretsmanager=session.client("secretsmanager"),
            lambda_=session.client("lambda"),
            connect=session.client("connect"),
            cloudwatch=session.client("cloudwatch"),
            sqs=session.client("sqs"),
            dynamodb=session.client("dynamodb"),
        )


@dataclass
class SmokeOptions:
    read_only: bool = False
    probe_id: str = field(default_factory=lambda: f"{PROBE_PREFIX}{uuid.uuid4()}")
    servicenow_attempts: int = 2


# -- inputs ---------------------------------------------------------------------------------------------------


def connect_instance_id(text: str) -> str:
    """An instance id from an id or an instance ARN (ListInstanceStorageConfigs takes the id)."""
    match = CONNECT_INSTANCE.match(text.strip())
    if not match:
        raise SmokeArgumentError(f"not an Amazon Connect instance id or ARN: {text[:120]!r}")
    return match.group(1)


def servicenow_url(text: str) -> str:
    """The instance root, validated exactly as the deployed function validates SERVICENOW_URL."""
    from bridge.config import _servicenow_url
    from bridge.errors import ConfigurationError

    try:
        return _servicenow_url({"SERVICENOW_URL": text})
    except ConfigurationError as exc:
        raise SmokeArgumentError(str(exc).replace("SERVICENOW_URL", "--servicenow-url")) from None


def stream_arn(text: str) -> str:
    if not STREAM_ARN.match(text):
        raise SmokeArgumentError(f"not a Kinesis stream ARN: {text[:160]!r}")
    return text


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or type(exc).__name__)


def resolve_stack(cloudformation: Any, stack: str) -> Targets:
    """The stack's resources from its outputs, with its parameters as the fallback for older stacks."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise SmokeArgumentError(f"stack {stack!r}: {message}") from None
    if not stacks:
        raise SmokeArgumentError(f"stack {stack!r} does not exist")
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stacks[0].get("Parameters", [])}
    found = {name: parameters[key] for key, name in STACK_PARAMETERS.items() if parameters.get(key)}
    found.update({name: outputs[key] for key, name in STACK_OUTPUTS.items() if outputs.get(key)})
    values: dict[str, Any] = {"stack": stack, "stack_status": stacks[0].get("StackStatus")}
    for name, value in found.items():
        if name == "alarm_names":
            values[name] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif name == "connect_instance_id":
            values[name] = connect_instance_id(value)
        else:
            values[name] = value
    return Targets(**values)


# -- the checks -----------------------------------------------------------------------------------------------


def _secret_fetcher(secretsmanager: Any) -> Callable[[str, bool], str]:
    """The bridge's SecretCredentials reads through Powertools' cache; smoke reads the secret fresh each time."""

    def fetch(secret_id: str, force: bool) -> str:
        response = secretsmanager.get_secret_value(SecretId=secret_id)
        if "SecretString" in response:
            return str(response["SecretString"])
        return bytes(response.get("SecretBinary", b"")).decode("utf-8", errors="replace")

    return fetch


SECRET_FIXES = {
    "ResourceNotFoundException": "create it (README Deploying step 3) or correct ServiceNowSecretArn",
    "AccessDeniedException": (
        "allow secretsmanager:GetSecretValue (and kms:Decrypt on its key) to the identity running smoke"
    ),
    "DecryptionFailure": "allow kms:Decrypt on the secret's key, or set ServiceNowSecretKmsKeyArn",
}


def check_secret(secretsmanager: Any, secret_arn: str) -> tuple[CheckResult, Any]:
    """The check's result and, when the secret parses, the bridge's credentials provider reading it (else None)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from bridge.adapters.secrets import SecretCredentials
    from bridge.errors import ConfigurationError

    name = "secret"
    provider = SecretCredentials(secret_arn, fetch=_secret_fetcher(secretsmanager))
    try:
        credentials = provider.get()
    except ClientError as exc:
        code = _error_code(exc)
        return failed(name, f"cannot read {secret_arn}: {code}", SECRET_FIXES.get(code, "check the ARN and IAM")), None
    except BotoCoreError as exc:
        return failed(name, f"cannot reach Secrets Manager: {type(exc).__name__}", "check region and network"), None
    except ConfigurationError as exc:
        fix = (
            "aws secretsmanager put-secret-value --secret-id ARN --secret-string "
            '\'{"username":"…","password":"…"}\' (or {"client_id":"…","client_secret":"…"})'
        )
        return failed(name, str(exc), fix), None
    if credentials.oauth and credentials.username:
        kind = "OAuth password grant (client_id, client_secret, username, password)"
    elif credentials.oauth:
        kind = "OAuth client credentials (client_id, client_secret)"
    else:
        kind = "basic auth (username, password)"
    return passed(name, f"{secret_arn} reads: {kind}"), provider


def _servicenow_failure(name: str, exc: Exception, fix: str) -> CheckResult:
    from bridge.errors import ServiceNowAuthError, ServiceNowError, ServiceNowUnavailableError

    if isinstance(exc, ServiceNowError):
        status = f"{exc.status} " if exc.status else ""
        txn = f" (X-Transaction-ID {exc.transaction_id})" if exc.transaction_id else ""
        detail = f"{exc.operation}: {status}{exc.message}{txn}"
        if isinstance(exc, ServiceNowUnavailableError):
            fix = "check ServiceNowUrl, that the instance is awake, and the function's egress (README static egress)"
        elif isinstance(exc, ServiceNowAuthError):
            fix = "fix the secret's credentials (README Deploying, ServiceNow side: user, OAuth client)"
        return failed(name, detail, fix)
    return failed(name, f"{type(exc).__name__}", fix)


AUTH_CHECK, WRITE_CHECK, READ_CHECK = "ServiceNow credentials", "voice interaction API", "Table API read"
RECOVERY_TABLES = ("interaction", "sys_cs_conversation", "sys_cs_message")


@dataclass
class _Probe:
    """What the write probe created so far (the reads look for it; the close cleans it up)."""

    interaction_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.interaction_id and self.conversation_id and self.message_id)


def check_servicenow(url: str, credentials: Any, options: SmokeOptions) -> list[CheckResult]:
    """Credentials, the create/close probe and the recovery reads, through the bridge's own ServiceNowClient
    (``credentials``: the bridge's SecretCredentials provider, as check_secret returns it)."""
    from bridge.adapters.servicenow import ServiceNowClient

    client = ServiceNowClient(url, credentials, max_attempts=options.servicenow_attempts)
    try:
        auth, forbidden = _check_credentials(client, url, credentials, options)
        if auth.status is Status.FAILED:
            reason = "not run: ServiceNow did not accept the credentials"
            return [auth, skipped(WRITE_CHECK, reason), skipped(READ_CHECK, reason)]
        probe = _Probe()
        write = skipped(WRITE_CHECK, "--read-only: no probe interaction created") if options.read_only else None
        try:
            if not options.read_only:
                write = _write_probe(client, probe, options)
            read = _check_reads(client, probe, forbidden, options)
        finally:  # whatever happened, the probe does not stay open
            closed = _close_probe(client, probe)
        if write is not None and write.status is Status.FAILED and closed is not None:
            write = replace(write, detail=f"{write.detail}; and the probe could not be closed: {closed.detail}")
        write = (
            write
            or closed
            or passed(
                WRITE_CHECK,
                f"created and closed probe interaction {probe.interaction_id} "
                f"(clientSessionId {options.probe_id}, one agent-only message)",
            )
        )
        return [auth, write, read]
    finally:
        client.session.close()


def _check_credentials(client: Any, url: str, credentials: Any, options: SmokeOptions) -> tuple[CheckResult, list[str]]:
    """A read of the (not yet existing) probe: a 401 blames the credentials, a 403 only the table's ACL."""
    from bridge.errors import ServiceNowError, ServiceNowReadForbiddenError

    forbidden: list[str] = []
    try:
        client.find_interaction(options.probe_id)
    except ServiceNowReadForbiddenError:
        forbidden.append("interaction")
    except ServiceNowError as exc:
        return _servicenow_failure(AUTH_CHECK, exc, "check ServiceNowUrl (the instance root)"), forbidden
    kind = "OAuth token" if credentials.get().oauth else "basic auth"
    return passed(AUTH_CHECK, f"{url} accepts the secret's credentials ({kind})"), forbidden


def _write_probe(client: Any, probe: _Probe, options: SmokeOptions) -> CheckResult | None:
    """As the bridge opens a contact: interaction, conversation, one agent-only message. None when all went well."""
    from bridge.errors import ServiceNowError
    from bridge.models import OpenRequest, OutgoingMessage

    request = OpenRequest(user_id=PROBE_USER_ID, client_session_id=options.probe_id)
    message = OutgoingMessage(
        id=f"{options.probe_id}-1",
        content=PROBE_MESSAGE,
        participant="AGENT",
        begin_offset_millis=0,
        end_offset_millis=1,
        sentiment=None,
        internal=True,  # an agent-only note: nothing a caller-facing view shows
        sequence_number="0",
    )
    try:
        probe.interaction_id = client.create_interaction(request)
        probe.conversation_id = client.create_conversation(probe.interaction_id, request)
        client.post_messages(probe.interaction_id, [message])
        probe.message_id = message.id
    except ServiceNowError as exc:
        fix = ROLE_FIX
        if exc.status in (400, 404):
            fix = (
                "the instance has no /api/now/v1/cs/voice-interactions or refuses the body: "
                "see README Deploying, ServiceNow side (the API)"
            )
        return _servicenow_failure(WRITE_CHECK, exc, fix)
    return None


def _check_reads(client: Any, probe: _Probe, forbidden: list[str], options: SmokeOptions) -> CheckResult:
    """The reads the bridge recovers with. With a complete probe each must find the probe's row (an ACL-hidden
    row reads as 200 with no rows); without one, only a 403 can show."""
    from bridge.errors import ServiceNowError, ServiceNowReadForbiddenError

    reads: dict[str, tuple[Callable[[], Any], Callable[[Any], bool]]]
    if probe.complete:
        interaction_id, conversation_id, message_id = (
            str(probe.interaction_id),
            str(probe.conversation_id),
            str(probe.message_id),
        )
        reads = {
            "interaction": (lambda: client.find_interaction(options.probe_id), lambda found: found == interaction_id),
            "sys_cs_conversation": (lambda: client.find_conversation(interaction_id), lambda found: bool(found)),
            "sys_cs_message": (
                lambda: client.find_message_ids(conversation_id, [message_id]),
                lambda found: message_id in found,
            ),
        }
    else:  # interaction was read by the credentials check
        reads = {
            "sys_cs_conversation": (lambda: client.find_conversation(NO_SYS_ID), lambda found: True),
            "sys_cs_message": (lambda: client.find_message_ids(NO_SYS_ID, [PROBE_USER_ID]), lambda found: True),
        }
    forbidden = list(forbidden)
    hidden: list[str] = []
    for table, (read, right) in reads.items():
        if table in forbidden:
            continue
        try:
            if not right(read()):
                hidden.append(table)
        except ServiceNowReadForbiddenError:
            forbidden.append(table)
        except ServiceNowError as exc:
            return _servicenow_failure(READ_CHECK, exc, READ_FIX)
    tables = ", ".join(RECOVERY_TABLES)
    if forbidden or hidden:
        parts = [f"403 on {', '.join(t for t in RECOVERY_TABLES if t in forbidden)}"] if forbidden else []
        if hidden:
            parts.append(f"the probe's row is not visible in {', '.join(hidden)} (200 with no rows: an ACL hides it)")
        return failed(READ_CHECK, "; ".join(parts), READ_FIX)
    if probe.complete:
        return passed(READ_CHECK, f"{tables} find the probe's rows")
    why = "--read-only" if options.read_only else "no complete probe"
    return passed(READ_CHECK, f"{tables} answer (table level only: {why}, so row-level ACLs are not proven)")


def _close_probe(client: Any, probe: _Probe) -> CheckResult | None:
    """Close what the probe opened (closing is idempotent); a failed line when it could not be closed."""
    from bridge.errors import ServiceNowError

    if not probe.interaction_id:
        return None
    try:
        client.close_interaction(probe.interaction_id, None)
    except ServiceNowError as exc:
        return _servicenow_failure(WRITE_CHECK, exc, f"close {probe.interaction_id} by hand; {ROLE_FIX}")
    return None


def _paged(call: Callable[..., dict[str, Any]], key: str, token: str, next_token: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    while True:
        page = call(**kwargs)
        items.extend(page.get(key, []))
        marker = page.get(next_token)
        if not marker:
            return items
        kwargs[token] = marker


def _queue_arn(sqs: Any, queue_url: str | None) -> str | None:
    if not queue_url:
        return None
    try:
        arn: str = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    except Exception:  # noqa: BLE001 - the queue's own check reports why; here it only names the destination
        return None
    return arn


def check_stack_status(targets: Targets) -> CheckResult:
    """The last deployment applied: a stack that rolled back still answers, with the previous version."""
    name, status = "stack", str(targets.stack_status or "?")
    if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"):
        return passed(name, f"{targets.stack} is {status}")
    if status.endswith("_IN_PROGRESS"):
        return failed(name, f"{targets.stack} is {status}", "wait for the deployment to finish and run smoke again")
    return failed(
        name,
        f"{targets.stack} is {status}: the last deployment did not apply",
        f"aws cloudformation describe-stack-events --stack-name {targets.stack} names the failed resource",
    )


def check_event_source_mapping(targets: Targets, clients: Clients) -> CheckResult:
    from botocore.exceptions import ClientError

    name = "event source mapping"
    if not targets.function:
        return skipped(name, "no function: pass --function or --stack")
    try:
        mappings = _paged(
            clients.lambda_.list_event_source_mappings,
            "EventSourceMappings",
            "Marker",
            "NextMarker",
            FunctionName=targets.function,
        )
    except ClientError as exc:
        code = _error_code(exc)
        fix = (
            "deploy the stack (sam deploy) or pass the right --function"
            if "NotFound" in code
            else ("allow lambda:ListEventSourceMappings to the identity running smoke")
        )
        return failed(name, f"ListEventSourceMappings {targets.function}: {code}", fix)
    kinesis = [m for m in mappings if ":kinesis:" in str(m.get("EventSourceArn", ""))]
    if targets.stream_arn:
        on_stream = [m for m in kinesis if m.get("EventSourceArn") == targets.stream_arn]
    else:
        on_stream = kinesis
    if not on_stream:
        others = ", ".join(str(m.get("EventSourceArn")) for m in kinesis) or "none"
        return failed(
            name,
            f"{targets.function} has no mapping on {targets.stream_arn or 'a Kinesis stream'} "
            f"(its Kinesis mappings: {others})",
            "deploy with SegmentStreamArn set to the stream Connect writes to",
        )
    mapping = on_stream[0]
    state = str(mapping.get("State", "?"))
    stream = str(mapping.get("EventSourceArn", "")).rsplit("/", 1)[-1]
    if state != "Enabled":
        if state == "Disabled":
            fix = "deploy with SegmentSourceEnabled=true (unless it was paused on purpose: README kill switch)"
        elif state in ("Creating", "Enabling", "Updating"):
            fix = "wait a minute and run smoke again"
        else:
            fix = f"see its StateTransitionReason: {mapping.get('StateTransitionReason', '-')}"
        return failed(name, f"mapping {mapping.get('UUID')} on {stream} is {state}", fix)
    result = str(mapping.get("LastProcessingResult") or "")
    if result.startswith("PROBLEM"):
        return failed(
            name,
            f"mapping {mapping.get('UUID')} on {stream} reports {result}",
            "fix what it names (the role's stream permissions, the VPC's route to Lambda/STS/Kinesis)",
        )
    failure_arn = _queue_arn(clients.sqs, targets.failure_queue_url)
    destination = mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if failure_arn and destination != failure_arn:
        return failed(
            name,
            f"mapping {mapping.get('UUID')} sends given-up batches to {destination or 'nowhere'}, not {failure_arn}",
            "redeploy the stack (the template sets the on-failure destination)",
        )
    where = f", on-failure -> {failure_arn.rsplit(':', 1)[-1]}" if failure_arn else ""
    return passed(name, f"mapping {mapping.get('UUID')} Enabled on {stream}{where}")


def check_connect(targets: Targets, clients: Clients) -> CheckResult:
    from botocore.exceptions import ClientError

    name = "Connect real-time segments"
    if not targets.connect_instance_id:
        return skipped(name, "no Connect instance: pass --connect-instance-id or set ConnectInstanceArn")
    if not targets.stream_arn:
        return skipped(name, "no stream: pass --stream-arn or --stack")
    try:
        configs = _paged(
            clients.connect.list_instance_storage_configs,
            "StorageConfigs",
            "NextToken",
            "NextToken",
            InstanceId=targets.connect_instance_id,
            ResourceType=REAL_TIME_SEGMENTS,
        )
    except ClientError as exc:
        code = _error_code(exc)
        fix = (
            "allow connect:ListInstanceStorageConfigs to the identity running smoke"
            if code == "AccessDeniedException"
            else "check --connect-instance-id / ConnectInstanceArn and the region"
        )
        return failed(name, f"ListInstanceStorageConfigs {targets.connect_instance_id}: {code}", fix)
    streams = [
        str(c.get("KinesisStreamConfig", {}).get("StreamArn"))
        for c in configs
        if c.get("StorageType") == "KINESIS_STREAM" and c.get("KinesisStreamConfig")
    ]
    associate = (
        f"aws connect associate-instance-storage-config --instance-id {targets.connect_instance_id} "
        f"--resource-type {REAL_TIME_SEGMENTS} --storage-config "
        f"'StorageType=KINESIS_STREAM,KinesisStreamConfig={{StreamArn={targets.stream_arn}}}'"
    )
    if targets.stream_arn in streams:
        return passed(name, f"instance {targets.connect_instance_id} streams {REAL_TIME_SEGMENTS} to the stream")
    if not streams:
        return failed(name, f"instance {targets.connect_instance_id} streams no real-time voice segments", associate)
    return failed(
        name,
        f"instance {targets.connect_instance_id} streams real-time segments to {', '.join(streams)}",
        "point SegmentStreamArn at that stream (another consumer may own the association) or " + associate,
    )


def check_alarms(targets: Targets, clients: Clients) -> CheckResult:
    name = "alarms"
    if not targets.alarm_names:
        return skipped(name, "no alarm names: pass --alarms or --stack")
    found: dict[str, dict[str, Any]] = {}
    names = list(targets.alarm_names)
    for start in range(0, len(names), 100):
        response = clients.cloudwatch.describe_alarms(AlarmNames=names[start : start + 100])
        for alarm in [*response.get("MetricAlarms", []), *response.get("CompositeAlarms", [])]:
            found[alarm["AlarmName"]] = alarm
    missing = [n for n in names if n not in found]
    if missing:
        return failed(name, f"missing: {', '.join(missing)}", "redeploy the stack (the template creates them)")
    alarming = [n for n, a in found.items() if a.get("StateValue") == "ALARM"]
    silent = [n for n, a in found.items() if not a.get("AlarmActions")]
    notes = [f"in ALARM: {', '.join(alarming)}"] if alarming else []
    if silent:
        notes.append(f"{len(silent)} without actions: set AlarmTopicArn to be notified")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return passed(name, f"{len(found)} exist{suffix}")


def check_table(targets: Targets, clients: Clients) -> CheckResult:
    from botocore.exceptions import ClientError

    name = "contact table"
    if not targets.table:
        return skipped(name, "no table: pass --table or --stack")
    try:
        table = clients.dynamodb.describe_table(TableName=targets.table)["Table"]
    except ClientError as exc:
        return failed(name, f"DescribeTable {targets.table}: {_error_code(exc)}", "deploy the stack or pass --table")
    status = table.get("TableStatus", "?")
    if status != "ACTIVE":
        return failed(name, f"{targets.table} is {status}", "wait for ACTIVE and run smoke again")
    protection = "on" if table.get("DeletionProtectionEnabled") else "off"
    return passed(name, f"{targets.table} is ACTIVE (deletion protection {protection})")


def check_queue(name: str, queue_url: str | None, flag: str, fix: str, clients: Clients) -> CheckResult:
    from botocore.exceptions import ClientError

    if not queue_url:
        return skipped(name, f"no queue: pass {flag} or --stack")
    try:
        attributes = clients.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
    except ClientError as exc:
        return failed(name, f"GetQueueAttributes {queue_url}: {_error_code(exc)}", f"deploy the stack or pass {flag}")
    visible = int(attributes.get("ApproximateNumberOfMessages", 0))
    in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
    if visible or in_flight:
        held = f"{visible} message(s)" + (f" and {in_flight} in flight" if in_flight else "")
        return failed(name, f"holds {held}", fix)
    return passed(name, "empty")


def run_checks(
    targets: Targets,
    clients: Clients,
    options: SmokeOptions | None = None,
    emit: Callable[[CheckResult], None] = lambda result: None,
) -> list[CheckResult]:
    """Every check, in order; ``emit`` sees each result as soon as it is known."""
    options = options or SmokeOptions()
    results: list[CheckResult] = []

    def add(*found: CheckResult) -> None:
        for result in found:
            results.append(result)
            emit(result)

    if targets.stack:
        add(check_stack_status(targets))
    servicenow_names = (AUTH_CHECK, WRITE_CHECK, READ_CHECK)
    credentials = None
    if targets.secret_arn:
        secret_result, credentials = check_secret(clients.secretsmanager, targets.secret_arn)
        add(secret_result)
    else:
        add(skipped("secret", "no secret: pass --secret-arn or --stack"))
    if credentials is None:
        reason = "not run: needs a readable secret" if targets.secret_arn else "no secret"
        add(*(skipped(name, reason) for name in servicenow_names))
    elif not targets.servicenow_url:
        add(*(skipped(name, "no ServiceNow URL: pass --servicenow-url or --stack") for name in servicenow_names))
    else:
        with _quiet_bridge_logger():
            add(*check_servicenow(targets.servicenow_url, credentials, options))
    parking_fix = "find the contacts with `voicebridge trace CONTACT_ID --stack STACK`; fix the cause, then redrive"
    failure_fix = (
        "batches were given up: re-read their shard/sequence ranges with `voicebridge capture` while the stream "
        "still holds them, then purge the queue"
    )
    aws_checks: list[tuple[str, Callable[[], CheckResult]]] = [
        ("event source mapping", lambda: check_event_source_mapping(targets, clients)),
        ("Connect real-time segments", lambda: check_connect(targets, clients)),
        ("alarms", lambda: check_alarms(targets, clients)),
        ("contact table", lambda: check_table(targets, clients)),
        (
            "parking queue",
            lambda: check_queue("parking queue", targets.parking_queue_url, "--parking-queue", parking_fix, clients),
        ),
        (
            "on-failure queue",
            lambda: check_queue(
                "on-failure queue", targets.failure_queue_url, "--on-failure-queue", failure_fix, clients
            ),
        ),
    ]
    for name, check in aws_checks:
        add(_guarded(name, check))
    return results


def _guarded(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """An AWS error the check does not explain itself (AccessDenied, throttling, no network) as its failed line."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        return check()
    except (NoCredentialsError, NoRegionError):
        raise  # every check would fail the same way: an argument error, reported once
    except ClientError as exc:
        operation = getattr(exc, "operation_name", "the call")
        return failed(name, f"{operation}: {_error_code(exc)}", "allow it to the identity running smoke, or retry")
    except BotoCoreError as exc:
        return failed(name, f"AWS unreachable: {type(exc).__name__}", "check the region, network and credentials")


@contextlib.contextmanager
def _quiet_bridge_logger() -> Iterator[None]:
    """The ServiceNow client logs a JSON line per request at INFO; smoke's own lines already say what happened.
    One logger per process: its level is restored after."""
    from bridge.log import logger

    previous = logger.log_level
    logger.setLevel("CRITICAL")
    try:
        yield
    finally:
        logger.setLevel(previous)


def summary(results: Sequence[CheckResult]) -> str:
    counts = {status: sum(1 for r in results if r.status is status) for status in Status}
    return (
        f"smoke: {counts[Status.PASSED]} passed, {counts[Status.FAILED]} failed, {counts[Status.SKIPPED]} not checked"
    )


# -- the command ----------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="read every resource from this stack's outputs (flags below override)")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    parser.add_argument("--function", help="the bridge function's name")
    parser.add_argument("--servicenow-url", help="the ServiceNow instance root, https://NAME.service-now.com")
    parser.add_argument("--secret-arn", help="the ServiceNow secret's ARN (or name)")
    parser.add_argument("--table", help="the contact table's name")
    parser.add_argument("--parking-queue", help="the parking queue's URL")
    parser.add_argument("--on-failure-queue", help="the event source mapping's on-failure queue URL")
    parser.add_argument("--stream-arn", help="the Kinesis stream Connect writes real-time segments to")
    parser.add_argument("--connect-instance-id", help="the Amazon Connect instance id or ARN")
    parser.add_argument("--alarms", help="comma-separated alarm names")
    parser.add_argument(
        "--read-only",
        action="store_true",
        help="create no probe interaction in ServiceNow (then row-level read access is not proven)",
    )


def targets_from_args(args: argparse.Namespace) -> Targets:
    """The explicit flags, validated (SmokeArgumentError names the flag)."""
    return Targets(
        function=args.function or None,
        servicenow_url=servicenow_url(args.servicenow_url) if args.servicenow_url else None,
        secret_arn=args.secret_arn or None,
        table=args.table or None,
        parking_queue_url=args.parking_queue or None,
        failure_queue_url=args.on_failure_queue or None,
        stream_arn=stream_arn(args.stream_arn) if args.stream_arn else None,
        connect_instance_id=connect_instance_id(args.connect_instance_id) if args.connect_instance_id else None,
        alarm_names=tuple(n.strip() for n in (args.alarms or "").split(",") if n.strip()),
    )


def run(args: argparse.Namespace, clients: Clients | None = None, options: SmokeOptions | None = None) -> int:
    from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError

    try:
        explicit = targets_from_args(args)
        if not args.stack and explicit == Targets():
            raise SmokeArgumentError(
                "pass --stack NAME, or the resources to check (--function, --servicenow-url, --secret-arn, ...)"
            )
        clients = clients or Clients.from_environment(args.region)
        targets = resolve_stack(clients.cloudformation, args.stack) if args.stack else Targets()
        targets = targets.overridden_by(explicit)
        if targets.servicenow_url:
            servicenow_url(targets.servicenow_url)  # a stack's own value is validated like a flag's
    except SmokeArgumentError as exc:
        print(f"voicebridge smoke: {exc}", file=sys.stderr)
        return 2
    except (NoCredentialsError, NoRegionError) as exc:
        print(f"voicebridge smoke: {exc} (set AWS_PROFILE/AWS_REGION or pass --region)", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"voicebridge smoke: AWS error: {exc}", file=sys.stderr)
        return 2
    options = replace(options or SmokeOptions(), read_only=args.read_only or bool(options and options.read_only))
    print(f"voicebridge smoke: {'stack ' + targets.stack if targets.stack else 'explicit resources'}", flush=True)
    try:
        results = run_checks(targets, clients, options, emit=lambda result: print(result.line(), flush=True))
    except (NoCredentialsError, NoRegionError) as exc:
        print(f"voicebridge smoke: {exc} (set AWS_PROFILE/AWS_REGION or pass --region)", file=sys.stderr)
        return 2
    print(summary(results))
    return 1 if any(r.status is Status.FAILED for r in results) else 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="voicebridge smoke")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
