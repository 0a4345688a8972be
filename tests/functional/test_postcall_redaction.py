"""REDACT_CONTENT on the raw variant: masked before it is sent; the redacted variant goes as Contact Lens wrote it."""

from __future__ import annotations

import pytest

from tests.functional import test_postcall_function as base
from tests.functional.test_postcall_function import C1, C1_RAW, C1_REDACTED, PostCall

postcall = base.postcall  # the same fixture: moto S3 with the fixture bucket, the emulator over HTTP


def test_raw_content_is_masked_with_redact_content(postcall: PostCall, monkeypatch: pytest.MonkeyPatch) -> None:
    postcall.configure(monkeypatch, ANALYSIS_VARIANT="raw", REDACT_CONTENT="pci")
    assert postcall.created(C1_RAW) == {"files": 1, "imported": 1}
    contents = [m["payload"] for m in postcall.stack.messages(C1)]
    assert "The card is [PII:CARD]." in contents
    assert not any("4111" in content for content in contents)
    assert "Hi, my name is Peter Jones and I want to pay my bill." in contents  # pci masks cards, not names


def test_the_redacted_variant_is_not_masked_again(postcall: PostCall, monkeypatch: pytest.MonkeyPatch) -> None:
    postcall.configure(monkeypatch, REDACT_CONTENT="pii")
    postcall.created(C1_REDACTED)
    assert "The card is [PII]." in [m["payload"] for m in postcall.stack.messages(C1)]
