"""Who is on the call and where its recording is: Amazon Connect lookups with validation and fallbacks.

Lookups never block a transcript: a missing permission or an unknown contact falls back to the configured
values (logged and counted); only throttling that outlasts the SDK's retries is retried via redelivery.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from bridge.config import AgentIdFormat, AgentLookup, CallerLookup, Settings
from bridge.errors import ConnectLookupError, RetryableError
from bridge.log import logger
from bridge.models import OpenRequest
from bridge.ports import AssociatedContact, ConnectPort, ContactDetails

T = TypeVar("T")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")


def agent_user_name(username: str | None, agent_format: AgentIdFormat) -> str | None:
    """The ServiceNow ``agentId`` for a Connect Username: as is, or without its domain (``user@domain``, and the
    ``DOMAIN\\user`` form of directory logins). ``ATTRIBUTE`` never gets here (the flow's attribute is taken as is)."""
    if not username or not username.strip():
        return None
    name = username.strip()
    if agent_format is AgentIdFormat.STRIP_DOMAIN:
        name = name.rsplit("\\", 1)[-1].split("@", 1)[0]
    return name or None


def valid_e164(number: str | None) -> str | None:
    """The number when it is E.164 (anonymous and withheld caller ids are not), else None."""
    if not number:
        return None
    candidate = number.strip().replace(" ", "")
    return candidate if E164.match(candidate) else None


@dataclass
class ContactDirectory:
    settings: Settings
    connect: ConnectPort

    @property
    def knows_calls(self) -> bool:
        """Whether Amazon Connect is asked at all (a deployment with lookups on): only then can transfer legs be
        recognised (bridge.legs); without it every leg is its own call, as before."""
        return (
            self.settings.caller_lookup is not CallerLookup.NONE or self.settings.agent_lookup is not AgentLookup.NONE
        )

    def describe(self, instance_id: str, contact_id: str, fallbacks: list[str]) -> ContactDetails:
        """DescribeContact with the directory's fallback (empty details, the operation noted in ``fallbacks``)."""
        if not instance_id:
            return ContactDetails()
        return self._lookup(
            "DescribeContact", fallbacks, ContactDetails(), self.connect.describe_contact, instance_id, contact_id
        )

    def associated(self, instance_id: str, contact_id: str, fallbacks: list[str]) -> list[AssociatedContact]:
        """The call's contacts (ListAssociatedContacts); on a lookup failure none (a single-leg call, counted)."""
        if not instance_id:
            return []
        empty: list[AssociatedContact] = []
        return self._lookup(
            "ListAssociatedContacts", fallbacks, empty, self.connect.associated_contacts, instance_id, contact_id
        )

    def agent_name(self, instance_id: str, agent_id: str | None) -> str | None:
        """The agent's Connect username (for the transfer note), or None."""
        if not agent_id or not instance_id or self.settings.agent_lookup is AgentLookup.NONE:
            return None
        return self._lookup("DescribeUser", [], None, self.connect.agent_username, instance_id, agent_id)

    def open_request(
        self,
        instance_id: str,
        contact_id: str,
        details: ContactDetails | None = None,
        agent_details: ContactDetails | None = None,
    ) -> tuple[OpenRequest, list[str]]:
        """The ``POST /cs/voice-interactions`` body, plus the names of lookups that fell back (for metrics).

        ``details``: the contact's DescribeContact answer when the caller has it already (a transfer's root);
        ``agent_details``: where the agent comes from when it is another leg's (the first leg with an agent)."""
        fallbacks: list[str] = []
        needs_describe = self.settings.caller_lookup is CallerLookup.DESCRIBE_CONTACT or (
            self.settings.agent_lookup is AgentLookup.DESCRIBE_USER
        )
        if details is None:
            details = self.describe(instance_id, contact_id, fallbacks) if needs_describe else ContactDetails()
        if agent_details is not None and not details.agent_id:
            details = replace(details, agent_id=agent_details.agent_id)
        attributes: Mapping[str, str] | None = None

        def contact_attributes() -> Mapping[str, str]:  # one GetContactAttributes for the caller and the agent
            nonlocal attributes
            if attributes is None:
                empty: Mapping[str, str] = {}
                attributes = self._lookup(
                    "GetContactAttributes", fallbacks, empty, self.connect.contact_attributes, instance_id, contact_id
                )
            return attributes

        caller: str | None = None
        if self.settings.caller_lookup is CallerLookup.DESCRIBE_CONTACT:
            caller = valid_e164(details.customer_number)
        elif self.settings.caller_lookup is CallerLookup.ATTRIBUTE and instance_id:
            caller = valid_e164(contact_attributes().get(self.settings.caller_attribute))
        if caller is None and self.settings.caller_lookup is not CallerLookup.NONE:
            fallbacks.append("caller")
        agent: str | None = None
        if self.settings.agent_lookup is AgentLookup.DESCRIBE_USER:
            if self.settings.agent_id_format is AgentIdFormat.ATTRIBUTE:
                if instance_id:
                    agent = (contact_attributes().get(self.settings.agent_id_attribute) or "").strip() or None
            elif details.agent_id:
                username = self._lookup(
                    "DescribeUser", fallbacks, None, self.connect.agent_username, instance_id, details.agent_id
                )
                agent = agent_user_name(username, self.settings.agent_id_format)
        return (
            OpenRequest(
                user_id=caller or self.settings.fallback_user_id,
                client_session_id=contact_id,
                caller_phone_number=caller,
                agent_id=agent,
                inbound_id=self.settings.inbound_id or None,
            ),
            fallbacks,
        )

    def recording_url(self, instance_id: str, contact_id: str) -> str | None:
        template = self.settings.recording_url_template
        location = ""
        if "{recording_location}" in template and instance_id:
            details = self._lookup(
                "DescribeContact", [], ContactDetails(), self.connect.describe_contact, instance_id, contact_id
            )
            location = details.recording_location or ""
            if not location:
                return None  # the recording does not exist (yet): close without a URL rather than a broken one
        return template.format(
            contact_id=contact_id,
            instance_id=instance_id,
            instance_alias=self.settings.connect_instance_alias,
            region=self.settings.region,
            recording_location=location,
        )

    def _lookup(self, operation: str, fallbacks: list[str], default: T, call: Callable[..., T], *args: str) -> T:
        try:
            return call(*args)
        except RetryableError:
            raise
        except ConnectLookupError as exc:
            logger.warning(
                "connect lookup fell back", step="lookup", outcome="fallback", operation=operation, error=str(exc)
            )
            fallbacks.append(operation)
            return default
