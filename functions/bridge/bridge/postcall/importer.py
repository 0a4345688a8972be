"""One analysis file's import: find or create the interaction, ``/transcript`` once, close with the recording URL.

Idempotent through the contact item (``bridge.postcall.record``): claimed with a conditional write, advanced stage by
stage with a version condition, so a redelivered event, the other variant of the same contact, or a re-run of the
backfill finds the import done (or resumes it) and never creates a second interaction. ServiceNow's own guard
backs this up: a second ``/transcript`` for an interaction answers "already been processed", which is success.

One source per interaction: a contact item without an import record was written by the live path (``/messages``);
such a contact is skipped. When the item is gone (TTL) and ServiceNow already has an interaction for the contact,
its conversation is read back: our turn ids there mean an earlier import got that far; other messages mean the
live path wrote it, and the file is skipped.

Failures: retryable ones (5xx, 429, timeouts, throttling, a concurrent import) raise, so Lambda/EventBridge retry
the event; a bad file and a ServiceNow rejection (400) are parked with the bucket, key and reason, and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from bridge.config import Settings
from bridge.directory import ContactDirectory
from bridge.errors import (
    ConfigurationError,
    ContactConflictError,
    PermanentError,
    RetryableError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
)
from bridge.log import logger
from bridge.ports import ParkedItem, ParkingPort, ServiceNowPort
from bridge.postcall.aws import ContactTimes, StoredObject
from bridge.postcall.keys import AnalysisKey, AnalysisVariant, parse_key
from bridge.postcall.mapping import (
    PostCallFileError,
    PostCallTranscript,
    Redactor,
    build_transcript,
    choose_anchor,
    identity,
    parse_document,
)
from bridge.postcall.record import ContactItem, ImportRecord, ImportStage

ALREADY_PROCESSED = "already been processed"
# Another worker holding a fresh claim is importing the contact now; after this long a stalled claim is resumed.
LEASE_SECONDS = 300
# Import records outlive the live path's 7-day items: a backfill re-run months later must still find them (and
# the read-back against ServiceNow covers an expired one).
IMPORT_TTL_DAYS = 400
READ_BACK_IDS = 20


class ImportStatus(StrEnum):
    IMPORTED = "imported"
    ALREADY_IMPORTED = "already imported"
    SKIPPED = "skipped"
    PARKED = "parked"
    FAILED = "failed"  # set by callers that catch a retryable error (the backfill); the importer raises those


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one file: a value the handler logs and counts and the backfill prints."""

    bucket: str
    key: str
    status: ImportStatus
    reason: str = ""
    contact_id: str = ""
    interaction_id: str | None = None
    turns: int = 0
    notes: int = 0
    anchor: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (ImportStatus.IMPORTED, ImportStatus.ALREADY_IMPORTED, ImportStatus.SKIPPED)


class ImportInProgressError(RetryableError):
    """Another delivery holds a fresh claim on this contact: retry later (it will be done, or resumable)."""

    reason_class = "postcall_in_progress"


class ImportStorePort(Protocol):
    def load_import(self, contact_id: str) -> ContactItem | None: ...

    def claim_import(self, record: ImportRecord) -> None: ...

    def save_import(self, record: ImportRecord, expected_version: int) -> ImportRecord: ...


class ObjectReaderPort(Protocol):
    def get(self, bucket: str, key: str) -> StoredObject: ...


@dataclass(frozen=True)
class ImportOptions:
    variant: AnalysisVariant = AnalysisVariant.REDACTED
    bucket: str = ""  # events for other buckets are skipped ("" accepts any)
    dry_run: bool = False


class PostCallImporter:
    """Thread-safe (keeps no per-file state): the backfill runs several files at once through one instance."""

    def __init__(
        self,
        settings: Settings,
        objects: ObjectReaderPort,
        store: ImportStorePort,
        servicenow: ServiceNowPort,
        directory: ContactDirectory,
        parking: ParkingPort,
        times: Callable[[str, str], ContactTimes],
        options: ImportOptions = ImportOptions(),
        redactor: Redactor = identity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.objects = objects
        self.store = store
        self.servicenow = servicenow
        self.directory = directory
        self.parking = parking
        self.times = times
        self.options = options
        self.redactor = redactor
        self.clock = clock

    # -- entry point ---------------------------------------------------------------------------------------------

    def import_object(self, bucket: str, key: str) -> ImportOutcome:
        """Import one object. Raises :class:`RetryableError` for what a retry can fix; parks what it cannot."""
        parsed = parse_key(key)
        if parsed is None:
            return ImportOutcome(bucket, key, ImportStatus.SKIPPED, "not a voice analysis file")
        skip = self._skip_reason(bucket, parsed)
        if skip:
            return ImportOutcome(bucket, key, ImportStatus.SKIPPED, skip, parsed.contact_id)
        logger.thread_safe_append_keys(contact_id=parsed.contact_id)
        try:
            return self._import(bucket, parsed)
        except ConfigurationError:
            raise  # a setting or permission, not the file: fail, so the event is retried and then kept
        except PermanentError as exc:
            return self._park(bucket, parsed, exc)
        finally:
            logger.thread_safe_remove_keys(["contact_id"])

    def _skip_reason(self, bucket: str, parsed: AnalysisKey) -> str:
        if self.options.bucket and bucket != self.options.bucket:
            return f"bucket {bucket} is not the configured analysis bucket"
        if parsed.variant is not self.options.variant:
            return f"{parsed.variant.value} variant (importing {self.options.variant.value})"
        return ""

    # -- the steps -----------------------------------------------------------------------------------------------

    def _import(self, bucket: str, parsed: AnalysisKey) -> ImportOutcome:
        contact_id = parsed.contact_id
        item = self.store.load_import(contact_id)
        settled = self._settled(bucket, parsed, item)
        if settled is not None:
            return settled
        record = item.record if item else None
        stored = self.objects.get(bucket, parsed.key)
        document = parse_document(stored.body, parsed)
        times = self.times(document.instance_id, contact_id)
        transcript = build_transcript(
            document, choose_anchor(times.agent_connected, times.initiated, parsed), self._redactor(parsed), parsed.key
        )
        if self.options.dry_run:
            return self._outcome(bucket, parsed, ImportStatus.IMPORTED, "dry run: would import", transcript, None)
        record = self._claim(parsed, stored, transcript, record)
        if record is None:  # lost the claim race: what won decides
            settled = self._settled(bucket, parsed, self.store.load_import(contact_id))
            if settled is not None:
                return settled
            raise ImportInProgressError("another delivery claimed this contact a moment ago")
        try:
            return self._advance(bucket, parsed, transcript, record, resumed=item is not None)
        except (RetryableError, PermanentError):
            self._release(record)  # a retry (or a redrive after a fix) resumes at once
            raise

    def _settled(self, bucket: str, parsed: AnalysisKey, item: ContactItem | None) -> ImportOutcome | None:
        """The outcome when the contact item already decides it (live, done, in progress elsewhere), else None."""
        if item is None:
            return None
        if item.live:
            return ImportOutcome(
                bucket,
                parsed.key,
                ImportStatus.SKIPPED,
                "the live path wrote this contact's transcript",
                parsed.contact_id,
            )
        record = item.record
        assert record is not None
        if record.stage is ImportStage.DONE:
            reason = "" if record.key == parsed.key else f"from {record.variant} file {record.key}"
            return ImportOutcome(
                bucket, parsed.key, ImportStatus.ALREADY_IMPORTED, reason, parsed.contact_id, record.interaction_id
            )
        if record.lease_until > self.clock():
            raise ImportInProgressError(f"contact is being imported from {record.key} (claim held)")
        return None

    def _claim(
        self, parsed: AnalysisKey, stored: StoredObject, transcript: PostCallTranscript, record: ImportRecord | None
    ) -> ImportRecord | None:
        now = int(self.clock())
        if record is None:
            fresh = ImportRecord(
                contact_id=parsed.contact_id,
                key=parsed.key,
                etag=stored.etag,
                variant=parsed.variant.value,
                stage=ImportStage.CLAIMED,
                version=1,
                instance_id=transcript.instance_id,
                lease_until=now + LEASE_SECONDS,
                created_at=now,
                updated_at=now,
                expires_at=now + IMPORT_TTL_DAYS * 86400,
            )
            try:
                self.store.claim_import(fresh)
            except ContactConflictError:
                return None
            return fresh
        # A stalled import (its claim expired): resume it from its stage, as this file.
        try:
            return self.store.save_import(
                record.evolve(
                    key=parsed.key,
                    etag=stored.etag,
                    variant=parsed.variant.value,
                    lease_until=now + LEASE_SECONDS,
                    updated_at=now,
                ),
                record.version,
            )
        except ContactConflictError:
            return None

    def _advance(
        self, bucket: str, parsed: AnalysisKey, transcript: PostCallTranscript, record: ImportRecord, resumed: bool
    ) -> ImportOutcome:
        contact_id = parsed.contact_id
        found_stored = False  # ServiceNow already had our transcript, though the contact item did not say so
        if record.stage is ImportStage.CLAIMED:
            found = self._find_interaction(contact_id, resumed)
            if found is not None:
                verdict = self._existing(found, transcript, resumed)
                if verdict == "live":
                    self._release(record)
                    return self._outcome(
                        bucket,
                        parsed,
                        ImportStatus.SKIPPED,
                        "ServiceNow already has this contact's interaction with other messages (live)",
                        transcript,
                        found,
                    )
                found_stored = verdict == "transcribed" and not resumed
                stage = ImportStage.TRANSCRIBED if verdict == "transcribed" else ImportStage.OPENED
                record = self._save(record, stage=stage, interaction_id=found)
            else:
                request, fallbacks = self.directory.open_request(transcript.instance_id, contact_id)
                if fallbacks:
                    logger.info("lookups fell back", step="lookup", outcome="fallback", lookups=fallbacks)
                interaction = self.servicenow.create_interaction(request)
                record = self._save(record, stage=ImportStage.OPENED, interaction_id=interaction)
        interaction_id = record.interaction_id or ""
        if record.stage is ImportStage.OPENED:
            try:
                self.servicenow.post_transcript(interaction_id, transcript.messages, transcript.conversation_started)
            except ServiceNowRejectedError as exc:
                if ALREADY_PROCESSED not in exc.message:
                    raise
                # One transcript per interaction: an earlier attempt (maybe the other variant) stored it.
                logger.info("transcript already stored", step="send", outcome="duplicate")
            record = self._save(record, stage=ImportStage.TRANSCRIBED)
        if record.stage is ImportStage.TRANSCRIBED:
            url = self.recording_url(bucket, parsed, transcript)
            self.servicenow.close_interaction(interaction_id, url)
            record = self._save(record, stage=ImportStage.DONE, lease_until=0)
        if found_stored:
            return self._outcome(
                bucket,
                parsed,
                ImportStatus.ALREADY_IMPORTED,
                "found in ServiceNow (the contact item had expired)",
                transcript,
                interaction_id,
            )
        logger.info(
            "post-call file imported",
            step="import",
            outcome="imported",
            turns=transcript.turns,
            notes=transcript.notes,
            anchor=transcript.anchor.source,
            variant=parsed.variant.value,
        )
        return self._outcome(bucket, parsed, ImportStatus.IMPORTED, "", transcript, interaction_id)

    def _find_interaction(self, contact_id: str, resumed: bool) -> str | None:
        """An interaction ServiceNow already has for the contact; None when there is none or reads are forbidden
        (the integration user may lack Table API read access: then the claim is all there is to go by)."""
        try:
            return self.servicenow.find_interaction(contact_id)
        except ServiceNowReadForbiddenError:
            if resumed:
                # An earlier attempt may have created one (an ambiguous create): it cannot be looked for.
                logger.warning(
                    "interaction read-back forbidden; creating", step="recover", outcome="possible duplicate"
                )
            return None

    def _existing(self, interaction_id: str, transcript: PostCallTranscript, resumed: bool) -> str:
        """Whose is the interaction ServiceNow already has: "transcribed" (our turns are there), "empty", "live"."""
        try:
            conversation = self.servicenow.find_conversation(interaction_id)
            if conversation is None:
                return "empty"
            ids = [m.id for m in transcript.messages[:READ_BACK_IDS]]
            if ids and self.servicenow.find_message_ids(conversation, ids):
                return "transcribed"
            return "live"
        except ServiceNowReadForbiddenError:
            if resumed:
                # Our own earlier attempt found or created it (our claim was there): /transcript is guarded by
                # ServiceNow's "already been processed" answer.
                return "empty"
            raise PermanentError(
                "ServiceNow already has an interaction for this contact and the Table API read that tells whose it "
                "is is forbidden for the integration user"
            ) from None

    def recording_url(self, bucket: str, parsed: AnalysisKey, transcript: PostCallTranscript) -> str | None:
        """As on the live path (``RECORDING_URL_TEMPLATE``); ``{recording_location}`` is the redacted recording next
        to a redacted file, else DescribeContact's recording, else the file's ``InputS3Uri``."""
        template = self.settings.recording_url_template
        if "{recording_location}" not in template:
            return self.directory.recording_url(transcript.instance_id, transcript.contact_id)
        location = ""
        if parsed.redacted_recording_key:
            location = f"{bucket}/{parsed.redacted_recording_key}"
        else:
            from_connect = self.directory.recording_url(transcript.instance_id, transcript.contact_id)
            if from_connect is not None:
                return from_connect
            if transcript.recording_uri:
                location = transcript.recording_uri.removeprefix("s3://")
        if not location:
            return None
        return template.format(
            contact_id=transcript.contact_id,
            instance_id=transcript.instance_id,
            instance_alias=self.settings.connect_instance_alias,
            region=self.settings.region,
            recording_location=location,
        )

    # -- helpers -------------------------------------------------------------------------------------------------

    def _redactor(self, parsed: AnalysisKey) -> Redactor:
        # The redacted variant is redacted by Contact Lens already; only raw content goes through REDACT_CONTENT.
        return self.redactor if parsed.variant is AnalysisVariant.RAW else identity

    def _save(self, record: ImportRecord, **changes: Any) -> ImportRecord:
        now = int(self.clock())
        changes.setdefault("lease_until", now + LEASE_SECONDS)
        return self.store.save_import(record.evolve(updated_at=now, **changes), record.version)

    def _release(self, record: ImportRecord) -> None:
        """Let the retry resume at once (best effort: an expired claim is resumed anyway). Re-read first: the
        steps before the failure advanced the record's version."""
        try:
            item = self.store.load_import(record.contact_id)
            current = item.record if item else None
            if current is not None and current.key == record.key and current.stage is not ImportStage.DONE:
                self.store.save_import(current.evolve(lease_until=0), current.version)
        except Exception:  # noqa: BLE001 - the claim then simply expires
            logger.warning("could not release the import claim", step="import", outcome="claim kept")

    def _park(self, bucket: str, parsed: AnalysisKey, exc: PermanentError) -> ImportOutcome:
        reason_class = (
            exc.reason_class
            if isinstance(exc, PostCallFileError | ServiceNowRejectedError)
            else ("postcall_" + exc.reason_class)
        )
        error: dict[str, Any] = {"error_class": type(exc).__name__}
        if isinstance(exc, ServiceNowRejectedError):
            error.update(exc.as_dict())
        reason = str(exc)
        self.parking.park(
            [
                ParkedItem(
                    reason_class,
                    reason,
                    ({"bucket": bucket, "key": parsed.key, "variant": parsed.variant.value},),
                    parsed.contact_id,
                    error,
                )
            ]
        )
        logger.error("post-call file parked", step="import", outcome="parked", reason_class=reason_class, error=reason)
        return ImportOutcome(bucket, parsed.key, ImportStatus.PARKED, reason, parsed.contact_id)

    @staticmethod
    def _outcome(
        bucket: str,
        parsed: AnalysisKey,
        status: ImportStatus,
        reason: str,
        transcript: PostCallTranscript,
        interaction_id: str | None,
    ) -> ImportOutcome:
        return ImportOutcome(
            bucket,
            parsed.key,
            status,
            reason,
            parsed.contact_id,
            interaction_id,
            transcript.turns,
            transcript.notes,
            transcript.anchor.source,
        )


def import_all(importer: PostCallImporter, refs: Sequence[tuple[str, str]]) -> list[ImportOutcome]:
    """Import several objects in order (the handler); a retryable error is raised after the others were tried."""
    outcomes: list[ImportOutcome] = []
    first_error: RetryableError | None = None
    for bucket, key in refs:
        try:
            outcomes.append(importer.import_object(bucket, key))
        except RetryableError as exc:
            first_error = first_error or exc
            parsed = parse_key(key)
            outcomes.append(
                ImportOutcome(bucket, key, ImportStatus.FAILED, str(exc), parsed.contact_id if parsed else "")
            )
    if first_error is not None:
        raise first_error
    return outcomes
