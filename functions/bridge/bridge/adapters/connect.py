"""Amazon Connect lookups (boto3 ``connect`` client). moto lacks these operations: tested with botocore Stubber."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import ConnectLookupError, ConnectThrottledError
from bridge.ports import ContactDetails

THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "LimitExceededException"})


def translate(exc: Exception, operation: str) -> Exception:
    """The one place Connect's driver errors become bridge errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in THROTTLING_CODES:
            return ConnectThrottledError(f"{operation}: {code}")
        return ConnectLookupError(f"{operation}: {code or 'error'}")
    if isinstance(exc, BotoCoreError):
        return ConnectThrottledError(f"{operation}: {type(exc).__name__}")
    return exc


class ConnectDirectoryClient:
    """Implements ``ConnectPort``."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def describe_contact(self, instance_id: str, contact_id: str) -> ContactDetails:
        try:
            contact = self.client.describe_contact(InstanceId=instance_id, ContactId=contact_id).get("Contact", {})
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, "DescribeContact") from exc
        endpoint = contact.get("CustomerEndpoint") or {}
        recordings = [r.get("Location") for r in contact.get("Recordings") or [] if r.get("Location")]
        return ContactDetails(
            customer_number=endpoint.get("Address")
            if endpoint.get("Type", "TELEPHONE_NUMBER") == "TELEPHONE_NUMBER"
            else None,
            agent_id=(contact.get("AgentInfo") or {}).get("Id") or None,
            recording_location=recordings[0] if recordings else None,
        )

    def contact_attributes(self, instance_id: str, contact_id: str) -> Mapping[str, str]:
        try:
            response = self.client.get_contact_attributes(InstanceId=instance_id, InitialContactId=contact_id)
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, "GetContactAttributes") from exc
        attributes = response.get("Attributes") or {}
        return {str(k): str(v) for k, v in attributes.items()}

    def agent_username(self, instance_id: str, agent_id: str) -> str | None:
        try:
            user = self.client.describe_user(InstanceId=instance_id, UserId=agent_id).get("User", {})
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, "DescribeUser") from exc
        return user.get("Username") or None
