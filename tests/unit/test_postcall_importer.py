"""The importer's decisions over in-memory fakes: the order of the steps, forbidden read-backs, claim races and
dry runs (the same paths over moto and the emulator: tests/functional/test_postcall_function.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.directory import ContactDirectory
from bridge.errors import ContactConflictError
from bridge.postcall.aws import ContactTimes, StoredObject
from bridge.postcall.importer import ImportOptions, ImportStatus, PostCallImporter
from bridge.postcall.record import ContactItem, ImportRecord, ImportStage
from tests.fakes import FakeConnect, FakeParking, FakeServiceNow

FIXTURES = Path(__file__).resolve().parents[2] / "events" / "postcall" / "bucket"
C2 = "8a2d4e6f-1b3c-4d5e-8f9a-0b1c2d3e4f52"
KEY = f"Analysis/Voice/Redacted/2026/03/14/{C2}_analysis_redacted_2026-03-14T11:31:07Z.json"
ENVIRONMENT = {
    "SERVICENOW_URL": "https://example.service-now.com",
    "SERVICENOW_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:sn-AbCdEf",
    "CONTACT_TABLE": "contacts",
    "PARKING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/parking",
    "CONNECT_INSTANCE_ALIAS": "example",
    "CALLER_LOOKUP": "none",
    "AGENT_LOOKUP": "none",
}


class FakeImportStore:
    """The contact table as the import sees it: conditional create, version-checked saves."""

    def __init__(self) -> None:
        self.items: dict[str, ContactItem] = {}
        self.writes = 0
        self.claim_conflict_then: ContactItem | None = None

    def load_import(self, contact_id: str) -> ContactItem | None:
        return self.items.get(contact_id)

    def claim_import(self, record: ImportRecord) -> None:
        self.writes += 1
        if self.claim_conflict_then is not None:  # another delivery won the race and got this far
            self.items[record.contact_id] = self.claim_conflict_then
        if record.contact_id in self.items:
            raise ContactConflictError("exists")
        self.items[record.contact_id] = ContactItem(record)

    def save_import(self, record: ImportRecord, expected_version: int) -> ImportRecord:
        self.writes += 1
        current = self.items.get(record.contact_id)
        if current is None or current.record is None or current.record.version != expected_version:
            raise ContactConflictError("changed")
        saved = record.evolve(version=expected_version + 1)
        self.items[record.contact_id] = ContactItem(saved)
        return saved


class FakeObjects:
    def get(self, bucket: str, key: str) -> StoredObject:
        return StoredObject((FIXTURES / key).read_bytes(), "etag-1")


def importer(servicenow: FakeServiceNow, store: FakeImportStore, dry_run: bool = False) -> PostCallImporter:
    settings = load_settings(ENVIRONMENT)
    return PostCallImporter(
        settings,
        FakeObjects(),
        store,
        servicenow,
        ContactDirectory(settings, FakeConnect()),
        FakeParking(),
        lambda instance, contact: ContactTimes(),
        ImportOptions(dry_run=dry_run),
    )


def test_the_steps_in_order_find_create_transcript_once_close() -> None:
    servicenow, store = FakeServiceNow(), FakeImportStore()
    outcome = importer(servicenow, store).import_object("b", KEY)
    assert outcome.status is ImportStatus.IMPORTED
    assert servicenow.calls == ["find_interaction", "create_interaction", "post_transcript", "close_interaction"]
    record = store.items[C2].record
    assert record is not None and record.stage is ImportStage.DONE and record.lease_until == 0
    assert store.writes == 4  # claim, opened, transcribed, done


def test_forbidden_read_backs_still_import_a_fresh_claim() -> None:
    servicenow, store = FakeServiceNow(), FakeImportStore()
    servicenow.read_forbidden = True
    assert importer(servicenow, store).import_object("b", KEY).status is ImportStatus.IMPORTED
    assert len(servicenow.by_contact(C2)) == 1


class ConversationReadForbidden(FakeServiceNow):
    def find_conversation(self, interaction_id: str) -> str | None:
        from bridge.errors import ServiceNowReadForbiddenError

        raise ServiceNowReadForbiddenError("User Not Authorized", status=403)


def test_an_existing_interaction_that_cannot_be_read_is_parked_not_written_into() -> None:
    from bridge.models import OpenRequest

    servicenow, store = ConversationReadForbidden(), FakeImportStore()
    servicenow.create_interaction(OpenRequest("someone", C2))  # the live path's, its contact item long expired
    servicenow.calls.clear()
    subject = importer(servicenow, store)
    outcome = subject.import_object("b", KEY)
    assert outcome.status is ImportStatus.PARKED
    assert "forbidden" in outcome.reason
    assert "post_transcript" not in servicenow.calls
    assert subject.parking.items[0].records == ({"bucket": "b", "key": KEY, "variant": "redacted"},)


def test_losing_the_claim_race_to_a_finished_import_is_already_imported() -> None:
    servicenow, store = FakeServiceNow(), FakeImportStore()
    done = ImportRecord(C2, KEY, "etag-1", "redacted", ImportStage.DONE, 5, interaction_id="i" * 32)
    store.claim_conflict_then = ContactItem(done)
    outcome = importer(servicenow, store).import_object("b", KEY)
    assert (outcome.status, outcome.interaction_id) == (ImportStatus.ALREADY_IMPORTED, "i" * 32)
    assert servicenow.calls == []


def test_a_dry_run_maps_and_writes_nothing() -> None:
    servicenow, store = FakeServiceNow(), FakeImportStore()
    outcome = importer(servicenow, store, dry_run=True).import_object("b", KEY)
    assert (outcome.status, outcome.reason, outcome.turns, outcome.notes) == (
        ImportStatus.IMPORTED,
        "dry run: would import",
        3,
        3,
    )
    assert servicenow.calls == [] and store.writes == 0


@pytest.mark.parametrize(
    "key",
    [
        f"Analysis/Voice/Redacted/2026/03/14/{C2}_call_recording_redacted_2026-03-14T11:31:07Z.wav",
        f"Analysis/Voice/2026/03/14/{C2}_analysis_2026-03-14T11:31:07Z.json",  # the other variant
    ],
)
def test_other_files_are_skipped_without_reading_anything(key: str) -> None:
    servicenow, store = FakeServiceNow(), FakeImportStore()
    assert importer(servicenow, store).import_object("b", key).status is ImportStatus.SKIPPED
    assert servicenow.calls == [] and store.writes == 0
