"""The post-call import's own settings (the ServiceNow, table, parking and lookup settings are ``bridge.config``'s).

- ``TRANSCRIPT_SOURCE``: ``realtime`` (default: post-call files are ignored) | ``postcall`` | ``realtime+postcall``.
  The import never writes into a contact the live path wrote (see ``bridge.postcall.importer``), so the two import
  modes differ only in the template (``postcall`` turns the Kinesis source off).
- ``ANALYSIS_VARIANT``: ``redacted`` (default) | ``raw``: the one variant imported when a contact has both.
- ``ANALYSIS_BUCKET``: the Contact Lens bucket; events of other buckets are skipped (empty: any).
- ``REDACT_CONTENT``: ``none`` (default) | ``pci`` | ``pii``: applied to the raw variant's content before it is sent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bridge.errors import ConfigurationError
from bridge.postcall.keys import AnalysisVariant


class TranscriptSource(StrEnum):
    REALTIME = "realtime"
    POSTCALL = "postcall"
    BOTH = "realtime+postcall"

    @property
    def imports_files(self) -> bool:
        return self is not TranscriptSource.REALTIME


REDACT_CHOICES = ("none", "pci", "pii")


@dataclass(frozen=True)
class PostCallSettings:
    transcript_source: TranscriptSource = TranscriptSource.REALTIME
    variant: AnalysisVariant = AnalysisVariant.REDACTED
    bucket: str = ""
    redact_content: str = "none"


def _choice(environ: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
    return raw


def load_postcall_settings(environ: Mapping[str, str] | None = None) -> PostCallSettings:
    environ = os.environ if environ is None else environ
    source = _choice(environ, "TRANSCRIPT_SOURCE", tuple(s.value for s in TranscriptSource), "realtime")
    variant = _choice(environ, "ANALYSIS_VARIANT", tuple(v.value for v in AnalysisVariant), "redacted")
    return PostCallSettings(
        transcript_source=TranscriptSource(source),
        variant=AnalysisVariant(variant),
        bucket=environ.get("ANALYSIS_BUCKET", "").strip(),
        redact_content=_choice(environ, "REDACT_CONTENT", REDACT_CHOICES, "none"),
    )
