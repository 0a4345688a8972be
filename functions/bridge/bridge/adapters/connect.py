"""Amazon Connect lookups (boto3 ``connect`` client). moto lacks these operations: tested with botocore Stubber."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import ConnectLookupError, ConnectThrottledError
from bridge.ports import AssociatedContact, ContactDetails

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


def _epoch(value: Any) -> float | None:
    """botocore parses Connect's timestamps to datetimes; the stand-in and tests may give numbers."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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
        agent = contact.get("AgentInfo") or {}
        return ContactDetails(
            customer_number=endpoint.get("Address")
            if endpoint.get("Type", "TELEPHONE_NUMBER") == "TELEPHONE_NUMBER"
            else None,
            agent_id=agent.get("Id") or None,
            recording_location=recordings[0] if recordings else None,
            initial_contact_id=contact.get("InitialContactId") or None,
            initiation_method=contact.get("InitiationMethod") or None,
            initiated_at=_epoch(contact.get("InitiationTimestamp")),
            agent_connected_at=_epoch(agent.get("ConnectedToAgentTimestamp")),
            disconnected_at=_epoch(contact.get("DisconnectTimestamp")),
        )

    def associated_contacts(self, instance_id: str, contact_id: str) -> list[AssociatedContact]:
        found: list[AssociatedContact] = []
        kwargs: dict[str, Any] = {"InstanceId": instance_id, "ContactId": contact_id, "MaxResults": 100}
        try:
            while True:
                response = self.client.list_associated_contacts(**kwargs)
                for item in response.get("ContactSummaryList") or []:
                    found.append(
                        AssociatedContact(
                            contact_id=str(item.get("ContactId") or ""),
                            initiation_method=item.get("InitiationMethod") or None,
                            initiated_at=_epoch(item.get("InitiationTimestamp")),
                            disconnected_at=_epoch(item.get("DisconnectTimestamp")),
                        )
                    )
                token = response.get("NextToken")
                if not token:
                    return [c for c in found if c.contact_id]
                kwargs["NextToken"] = token
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, "ListAssociatedContacts") from exc

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
