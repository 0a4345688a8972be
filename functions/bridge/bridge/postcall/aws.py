"""AWS for the import: reading analysis files from S3, and Amazon Connect's DescribeContact answer shared by the
caller/agent lookups and the ``conversationStarted`` anchor (one DescribeContact per contact, not two)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.errors import ConfigurationError, RetryableError
from bridge.postcall.mapping import PostCallFileError

# Analysis files are tens of KB (an hour-long call is ~1 MB); refuse anything absurd instead of loading it.
MAX_FILE_BYTES = 32 * 1024 * 1024
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CONFIGURATION_CODES = frozenset({"AccessDenied", "403", "NoSuchBucket", "AllAccessDisabled", "KMS.DisabledException"})


class ObjectStoreUnavailableError(RetryableError):
    reason_class = "s3_unavailable"


@dataclass(frozen=True)
class StoredObject:
    body: bytes
    etag: str


def _translate(exc: Exception, bucket: str, key: str, operation: str) -> Exception:
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in NOT_FOUND_CODES:
            return PostCallFileError(f"{operation}: the object no longer exists ({code})")
        if code in CONFIGURATION_CODES:
            return ConfigurationError(f"{operation} s3://{bucket}: {code} (check the function's S3/KMS permissions)")
        return ObjectStoreUnavailableError(f"{operation}: S3 {code}")
    if isinstance(exc, BotoCoreError):
        return ObjectStoreUnavailableError(f"{operation}: {type(exc).__name__}")
    return exc


class S3Objects:
    """GetObject and day listings (ListObjectsV2 by prefix: never a listing of the whole bucket)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, bucket: str, key: str) -> StoredObject:
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
            if int(response.get("ContentLength") or 0) > MAX_FILE_BYTES:
                response["Body"].close()
                raise PostCallFileError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            body = response["Body"].read()
        except PostCallFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated below
            raise _translate(exc, bucket, key, "GetObject") from exc
        return StoredObject(body, str(response.get("ETag") or "").strip('"'))

    def keys(self, bucket: str, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, etag) of every object under ``prefix``."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            try:
                response = self.client.list_objects_v2(**kwargs)
            except Exception as exc:  # noqa: BLE001 - translated below
                raise _translate(exc, bucket, prefix, "ListObjectsV2") from exc
            for item in response.get("Contents") or []:
                yield str(item["Key"]), str(item.get("ETag") or "").strip('"')
            if not response.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = response["NextContinuationToken"]


def timestamp(value: Any) -> datetime | None:
    """A DescribeContact timestamp: a datetime (boto3), an ISO 8601 string or epoch seconds (a JSON stand-in)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


class RememberingConnectClient:
    """A boto3 ``connect`` client whose DescribeContact answers are kept (bounded), so the directory's caller and
    agent lookups and the anchor lookup share one call. Everything else passes through."""

    MAX_REMEMBERED = 512

    def __init__(self, client: Any) -> None:
        self._client = client
        self._answers: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def describe_contact(self, InstanceId: str, ContactId: str) -> Any:  # noqa: N803 - boto3's keyword names
        with self._lock:
            if (InstanceId, ContactId) in self._answers:
                return self._answers[(InstanceId, ContactId)]
        answer = self._client.describe_contact(InstanceId=InstanceId, ContactId=ContactId)
        with self._lock:
            if len(self._answers) >= self.MAX_REMEMBERED:
                self._answers.clear()
            self._answers[(InstanceId, ContactId)] = answer
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FileConnectClient:
    """DescribeContact / DescribeUser / GetContactAttributes answered from a JSON file (``voicebridge backfill
    --connect``): ``{"contacts": {"<ContactId>": <DescribeContact's Contact>}, "users": {"<AgentId>": "<user>"}}``.
    A contact's ``Attributes`` object stands in for GetContactAttributes."""

    def __init__(self, data: dict[str, Any]) -> None:
        contacts = data.get("contacts") if isinstance(data, dict) else None
        users = data.get("users", {}) if isinstance(data, dict) else None
        if not isinstance(contacts, dict) or not isinstance(users, dict):
            raise ValueError('expected {"contacts": {ContactId: Contact}, "users": {AgentId: Username}}')
        self.contacts: dict[str, Any] = contacts
        self.users: dict[str, Any] = users

    @classmethod
    def load(cls, path: str) -> FileConnectClient:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    @staticmethod
    def _not_found(operation: str) -> Exception:
        from botocore.exceptions import ClientError

        return ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "not in the file"}}, operation)

    def describe_contact(self, InstanceId: str, ContactId: str) -> Any:  # noqa: N803 - boto3's keyword names
        contact = self.contacts.get(ContactId)
        if not isinstance(contact, dict):
            raise self._not_found("DescribeContact")
        return {"Contact": contact}

    def get_contact_attributes(self, InstanceId: str, InitialContactId: str) -> Any:  # noqa: N803
        contact = self.contacts.get(InitialContactId)
        if not isinstance(contact, dict):
            raise self._not_found("GetContactAttributes")
        return {"Attributes": contact.get("Attributes") or {}}

    def describe_user(self, InstanceId: str, UserId: str) -> Any:  # noqa: N803 - boto3's keyword names
        username = self.users.get(UserId)
        if not isinstance(username, str):
            raise self._not_found("DescribeUser")
        return {"User": {"Id": UserId, "Username": username}}


@dataclass(frozen=True)
class ContactTimes:
    agent_connected: datetime | None = None
    initiated: datetime | None = None


def contact_times(client: Any, instance_id: str, contact_id: str) -> ContactTimes:
    """The anchor candidates from DescribeContact; any failure means "unknown" (the next anchor applies)."""
    if client is None or not instance_id:
        return ContactTimes()
    from bridge.adapters.connect import translate

    try:
        contact = client.describe_contact(InstanceId=instance_id, ContactId=contact_id).get("Contact") or {}
    except Exception as exc:  # noqa: BLE001 - translated: throttling is retried, anything else falls back
        error = translate(exc, "DescribeContact")
        if isinstance(error, RetryableError):
            raise error from exc
        return ContactTimes()
    agent = contact.get("AgentInfo") or {}
    return ContactTimes(
        timestamp(agent.get("ConnectedToAgentTimestamp")), timestamp(contact.get("InitiationTimestamp"))
    )
