"""Where Contact Lens writes post-call analysis files, and which keys are ours to import (pure).

Raw: ``[PREFIX]Analysis/Voice/YYYY/MM/DD/<ContactId>_analysis_<YYYY-MM-DDTHH:MM:SSZ>.json``; redacted:
``[PREFIX]Analysis/Voice/Redacted/YYYY/MM/DD/<ContactId>_analysis_redacted_<timestamp>.json`` (next to the redacted
recording ``..._call_recording_redacted_<timestamp>.wav``). ``Analysis/`` sits at the bucket root in observed
instances; any prefix before it is accepted (``(^|/)Analysis/Voice/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum


class AnalysisVariant(StrEnum):
    REDACTED = "redacted"
    RAW = "raw"


_ANALYSIS_KEY = re.compile(
    r"(?P<prefix>^|.*/)Analysis/Voice/(?P<redacted_dir>Redacted/)?(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/"
    r"(?P<contact>[^/_]+)_analysis_(?P<redacted_name>redacted_)?(?P<stamp>[^/]+)\.json$"
)
_STAMP_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y%m%dT%H:%M_UTC", "%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class AnalysisKey:
    """A parsed analysis file key."""

    key: str
    prefix: str  # what precedes ``Analysis/`` ("" at the bucket root)
    contact_id: str
    variant: AnalysisVariant
    day: date
    written_at: datetime | None  # the timestamp in the name (when the analysis was written), UTC

    @property
    def redacted_recording_key(self) -> str | None:
        """The redacted recording written next to a redacted analysis file (None for the raw variant)."""
        if self.variant is not AnalysisVariant.REDACTED:
            return None
        folder, _, name = self.key.rpartition("/")
        return f"{folder}/{name.replace('_analysis_redacted_', '_call_recording_redacted_')[: -len('.json')]}.wav"


def parse_key(key: str) -> AnalysisKey | None:
    """The key as an analysis file of a voice contact, or None (a recording, a chat or email analysis, other)."""
    match = _ANALYSIS_KEY.match(key)
    if match is None:
        return None
    redacted = bool(match["redacted_dir"])
    if redacted != bool(match["redacted_name"]):
        return None  # "Redacted/" folder and "_redacted_" name always come together
    try:
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None
    return AnalysisKey(
        key=key,
        prefix=match["prefix"],
        contact_id=match["contact"],
        variant=AnalysisVariant.REDACTED if redacted else AnalysisVariant.RAW,
        day=day,
        written_at=parse_stamp(match["stamp"]),
    )


def parse_stamp(stamp: str) -> datetime | None:
    for layout in _STAMP_FORMATS:
        try:
            return datetime.strptime(stamp, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def normalise_prefix(prefix: str) -> str:
    """``--prefix`` as the part before ``Analysis/``: "" or ending in one slash."""
    prefix = prefix.strip().lstrip("/")
    if prefix.endswith("Analysis/Voice/") or prefix.endswith("Analysis/Voice"):
        prefix = prefix.rsplit("Analysis/Voice", 1)[0]
    return prefix.rstrip("/") + "/" if prefix.rstrip("/") else ""


def day_prefixes(prefix: str, variant: AnalysisVariant, since: date, until: date) -> list[str]:
    """One S3 list prefix per day of ``since..until`` (inclusive): never a listing of the whole bucket."""
    folder = "Analysis/Voice/Redacted/" if variant is AnalysisVariant.REDACTED else "Analysis/Voice/"
    base = normalise_prefix(prefix) + folder
    days = (until - since).days
    return [f"{base}{(since + timedelta(days=n)):%Y/%m/%d}/" for n in range(days + 1)]
