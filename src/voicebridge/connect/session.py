"""The stand-in as replay (and the demo) run it: ``voicebridge replay --connect CONTACTS.json``.

It starts the stand-in, gives the handler the environment the deployed function has when it may call Amazon
Connect (lookups on, both clients' endpoints here), and answers ListRealtimeContactAnalysisSegments with the
fixture's own segments as replay hands each batch to the handler (what Contact Lens holds by then), falling back
to the file's ``segments``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from voicebridge.connect.data import ConnectData, DeliveredSegments, combined
from voicebridge.connect.server import RunningConnect, start_connect

# The deployed function's lookups when it has a Connect instance (template.yaml's CallerLookup/AgentLookup
# defaults); the instance id itself travels in every Contact Lens event, so nothing else is needed.
LOOKUP_ENVIRONMENT = {"CALLER_LOOKUP": "describe_contact", "AGENT_LOOKUP": "describe_user"}


@dataclass
class ReplayConnect:
    running: RunningConnect
    delivered: DeliveredSegments

    @property
    def handler_environment(self) -> dict[str, str]:
        return {**self.running.client_environment(), **LOOKUP_ENVIRONMENT}

    def feed(self, event: Mapping[str, Any]) -> None:
        """A Lambda Kinesis event about to reach the handler: its segments are now in Contact Lens."""
        self.delivered.deliver_kinesis(event.get("Records") or [])


@contextlib.contextmanager
def replay_connect(data: ConnectData | None) -> Iterator[ReplayConnect | None]:
    """The running stand-in for ``data``, or None (and nothing started) without it."""
    if data is None:
        yield None
        return
    delivered = DeliveredSegments()
    with start_connect(data, segments=combined(delivered, data.file_segments)) as running:
        yield ReplayConnect(running, delivered)
