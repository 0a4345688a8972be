"""Points in time typed on a command line (``--since``, ``--from``, ``--until``), shared by trace and capture."""

from __future__ import annotations

import re
from datetime import UTC, datetime

DURATION_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str, now: float) -> float:
    """Epoch seconds from a duration back from ``now`` (``90s``, ``30m``, ``24h``, ``7d``, ``2w``), an ISO 8601 time
    (naive means UTC) or epoch seconds. Raises ValueError for anything else."""
    value = text.strip()
    match = DURATION_PATTERN.match(value.lower())
    if match:
        return now - float(match.group(1)) * SECONDS_PER_UNIT[match.group(2)]
    try:
        return float(value)
    except ValueError:
        pass
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))  # ValueError when it is not ISO 8601 either
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
