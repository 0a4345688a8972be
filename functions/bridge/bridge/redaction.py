"""Opt-in masking of payment cards, SSNs, e-mail addresses and phone numbers before content leaves AWS.

Pure and deterministic: ``Redactor(mode).redact(text)`` returns the masked text, the kinds it masked and the masked
spans (so character offsets into the original, such as Contact Lens IssuesDetected, can be carried over). The
planner applies it to transcript content and notes; the post-call import applies the same API to its raw variant.

Detection is patterns plus checks, no NLP model (see README "Redaction (RedactContent)"):

- ``pci``: card numbers and US SSNs.

  * A *number run* is a sequence of tokens joined by whitespace, a hyphen (spaces around it allowed) or a comma
    followed by whitespace. A token is a group of ASCII digits or a digit word: ``zero``, ``oh`` (0), ``one`` ..
    ``nine``, optionally after ``double`` / ``triple`` (``double five`` = 55). Case does not matter.
  * Card: any consecutive tokens of a run with 13-19 digits in all that pass the Luhn check (``stdnum.luhn``);
    every token inside such a window is masked. A single token longer than 19 digits is never a card.
  * SSN (``stdnum.us.ssn`` rules: area not 000/666/9xx, group not 00, serial not 0000, the known published
    numbers excluded): three digit groups of 3, 2 and 4 digits (``123-45-6789``, ``123 45 6789``), or, when the
    same text mentions ``social security``, ``social`` or ``SSN``, any 9 digits of one run (``123456789``,
    ``one two three four five six seven eight nine``).

- ``pii``: ``pci`` plus

  * e-mail: ``local@domain.tld`` in ASCII (letters, digits, ``._%+-`` in the local part);
  * phone: North American numbers in 3-3-4 groups with a separator (space, ``-`` or ``.``) or a parenthesised
    area code, area code and exchange starting 2-9, optionally after ``1`` / ``+1``; and ``+`` followed by 8-15
    digits (E.164, separators allowed). A bare 10-digit number is not a phone number here (it may be an order
    number); digit words are not phone numbers.

Overlapping finds are merged into one placeholder of the first kind in the order card, SSN, e-mail, phone, so no
fragment of either survives. Placeholders contain no digit and no ``@``, and next to a find its brackets answer
every boundary check as the masked characters did: masking twice equals masking once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from functools import cache, lru_cache
from itertools import islice
from typing import NamedTuple


class RedactionMode(StrEnum):
    NONE = "none"  # today's behaviour: content is sent as Contact Lens gave it
    PCI = "pci"  # card numbers and US SSNs
    PII = "pii"  # pci plus e-mail addresses and phone numbers


class PiiKind(StrEnum):
    # Declaration order is the priority when two finds overlap.
    CARD = "CARD"
    SSN = "SSN"
    EMAIL = "EMAIL"
    PHONE = "PHONE"

    @property
    def placeholder(self) -> str:
        return f"[PII:{self.value}]"


_PRIORITY = {kind: rank for rank, kind in enumerate(PiiKind)}


# Typed named tuples rather than dataclasses: the planner imports this module even with redaction off, and a frozen
# dataclass costs ~0.7 ms to define (cold start) and more to build than a tuple (per masked span).
class MaskedSpan(NamedTuple):
    """One masked stretch: ``[begin, end)`` in the original text, ``[new_begin, new_end)`` in the masked one."""

    begin: int
    end: int
    kind: PiiKind
    new_begin: int
    new_end: int


class RedactionResult(NamedTuple):
    text: str
    kinds: frozenset[PiiKind] = frozenset()
    spans: tuple[MaskedSpan, ...] = ()  # sorted, non-overlapping

    @property
    def redacted(self) -> bool:
        return bool(self.spans)

    def map_offset(self, position: int, *, end: bool = False) -> int:
        """Where an original character offset lands in the masked text.

        Offsets outside masked spans shift by the length changes before them; an offset strictly inside a masked
        span snaps outwards to the placeholder's start (``end=False``) or end (``end=True``), so a range that
        touched a masked value covers its whole placeholder and never cuts it.
        """
        shift = 0
        for span in self.spans:
            if position <= span.begin:
                break
            if position < span.end:
                return span.new_end if end else span.new_begin
            shift = span.new_end - span.end
        return position + shift

    def map_range(self, begin: int, end: int) -> tuple[int, int]:
        return self.map_offset(begin), self.map_offset(end, end=True)


_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_REPEATS = {"double": 2, "triple": 3}
# Boundaries: a placeholder's "[" and "]" count as word characters, as the masked characters at its edges were
# (digits and letters; only a phone number may start with "(" or "+"). So a boundary check next to a placeholder
# answers as it did before masking, and redacting twice equals redacting once (the property tests check it).
_BEFORE = r"(?<![\w\]])"
_AFTER = r"(?![\w\[])"
_WORD = "(?:" + "|".join(_DIGIT_WORDS) + ")" + _AFTER
# A digit group ends where the word does: "5th" or "10am" is not a number token (and ends a run before it).
_TOKEN = rf"(?:[0-9]++{_AFTER}|(?:(?:double|triple)\s+)?{_WORD})"
_SEPARATOR = r"(?:\s*-\s*|,?\s+)"
CARD_DIGITS = range(13, 20)
SSN_GROUPS = (3, 2, 4)
MAX_CHECKED_TOKENS = 64


class _Patterns(NamedTuple):
    run: re.Pattern[str]
    token: re.Pattern[str]
    ssn_context: re.Pattern[str]
    email: re.Pattern[str]
    phone: re.Pattern[str]
    international: re.Pattern[str]


@lru_cache(maxsize=1)
def _patterns() -> _Patterns:
    """Compiled on first use, so a bridge with redaction off pays nothing at import."""
    return _Patterns(
        # No "thousands group" look-behind such as (?<!\d,): masking the digit before it would change its answer
        # (see _BEFORE). Possessive repeat: a run never gives back tokens to end somewhere else.
        run=re.compile(rf"{_BEFORE}{_TOKEN}(?:{_SEPARATOR}{_TOKEN})*+", re.IGNORECASE),
        token=re.compile(rf"([0-9]+)|(?:(double|triple)\s+)?({_WORD})", re.IGNORECASE),
        # Not the "SSN" of our own placeholder "[PII:SSN]": masked text must not be context for more masking.
        ssn_context=re.compile(r"(?<!PII:)\b(?:social(?:\s+security)?|ssn)\b", re.IGNORECASE),
        email=re.compile(
            r"(?<![\w.%+\]-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
            r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w\[-])"
        ),
        phone=re.compile(
            r"(?<![\w+\]])(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}"
            + _AFTER
        ),
        international=re.compile(r"(?<![\w+\]])\+[1-9](?:[ .-]?[0-9]){7,14}" + _AFTER),
    )


class _Group(NamedTuple):
    begin: int
    end: int
    digits: str


class _Find(NamedTuple):
    begin: int
    end: int
    kind: PiiKind


def _groups(text: str, begin: int, end: int, token: re.Pattern[str]) -> list[_Group]:
    """The run's tokens as digit groups; at most MAX_CHECKED_TOKENS + 1 (enough to know a run is too long)."""
    groups = []
    for match in islice(token.finditer(text, begin, end), MAX_CHECKED_TOKENS + 1):
        number, repeat, word = match.groups()
        digits = number if number else _DIGIT_WORDS[word.lower()] * _REPEATS.get((repeat or "").lower(), 1)
        groups.append(_Group(match.start(), match.end(), digits))
    return groups


class Redactor:
    """Masks what ``mode`` covers. Build once (``redactor_for``) and share: it holds no per-call state."""

    def __init__(self, mode: RedactionMode) -> None:
        self.mode = mode
        self._luhn: Callable[[str], bool] = lambda digits: False
        self._ssn: Callable[[str], bool] = lambda digits: False
        if mode is not RedactionMode.NONE:
            # Lazy: the handler imports these only when redaction is on (~5 ms on top of boto3 and requests).
            from stdnum import luhn
            from stdnum.us import ssn

            self._luhn = luhn.is_valid
            self._ssn = ssn.is_valid

    def redact(self, text: str) -> RedactionResult:
        if self.mode is RedactionMode.NONE or not text:
            return RedactionResult(text)
        finds = self._number_finds(text)
        if self.mode is RedactionMode.PII:
            finds += self._contact_finds(text)
        if not finds:
            return RedactionResult(text)
        return _apply(text, _merge(finds))

    # -- cards and SSNs ---------------------------------------------------------------------------------------

    def _number_finds(self, text: str) -> list[_Find]:
        patterns = _patterns()
        finds: list[_Find] = []
        ssn_context: bool | None = None  # searched once per text, and only when a 9-digit candidate needs it
        for run in patterns.run.finditer(text):
            if run.end() - run.start() < 9:
                continue  # every digit takes at least a character: fewer than 9 digits (the common case)
            groups = _groups(text, run.start(), run.end(), patterns.token)
            digits = sum(len(g.digits) for g in groups)
            if digits < 9:
                continue  # shorter than any SSN or card: the common case (offsets, prices, times, dates)
            if len(groups) > MAX_CHECKED_TOKENS:
                # Far longer than any card read out, even digit by digit. Checking its every window costs ~7 Luhn
                # checks per token (seconds for a pathological 1 MB record, which must not stall the shard): fail
                # closed instead, and mask it whole.
                finds.append(_Find(run.start(), run.end(), PiiKind.CARD))
                continue
            for part in self._cards(groups, finds):
                for rest in self._grouped_ssn(part, finds):
                    if sum(len(g.digits) for g in rest) < 9:
                        continue
                    if ssn_context is None:
                        ssn_context = patterns.ssn_context.search(text) is not None
                    if ssn_context:
                        self._nine_digit_ssn(rest, finds)
        return finds

    def _cards(self, groups: list[_Group], finds: list[_Find]) -> list[list[_Group]]:
        """Mask every group inside *any* card window; return the stretches of groups between them (SSN checks).

        The union, not a best window: a neighbouring number can make a longer window pass Luhn by chance
        ("12345 4111 1111 1111 1111"), and picking that one would leave the card's last group in clear text.
        """
        masked = [False] * len(groups)
        for start in range(len(groups)):
            digits = ""
            for end in range(start, len(groups)):
                digits += groups[end].digits
                if len(digits) > CARD_DIGITS.stop - 1:
                    break
                if len(digits) in CARD_DIGITS and self._luhn(digits):
                    masked[start : end + 1] = [True] * (end + 1 - start)
        rest: list[list[_Group]] = [[]]
        index = 0
        while index < len(groups):
            if not masked[index]:
                rest[-1].append(groups[index])
                index += 1
                continue
            first = index
            while index < len(groups) and masked[index]:
                index += 1
            finds.append(_Find(groups[first].begin, groups[index - 1].end, PiiKind.CARD))
            rest.append([])
        return [stretch for stretch in rest if stretch]

    def _grouped_ssn(self, part: list[_Group], finds: list[_Find]) -> list[list[_Group]]:
        """Mask 3-2-4 groups that are a valid SSN; return the stretches between them."""
        rest: list[list[_Group]] = []
        index = taken = 0
        while index + 3 <= len(part):
            window = part[index : index + 3]
            if tuple(len(g.digits) for g in window) == SSN_GROUPS and self._ssn("".join(g.digits for g in window)):
                finds.append(_Find(window[0].begin, window[-1].end, PiiKind.SSN))
                rest.append(part[taken:index])
                index = taken = index + 3
            else:
                index += 1
        rest.append(part[taken:])
        return [stretch for stretch in rest if stretch]

    def _nine_digit_ssn(self, part: list[_Group], finds: list[_Find]) -> None:
        start = 0
        while start < len(part):
            total, end = 0, start
            while end < len(part) and total < 9:
                total += len(part[end].digits)
                end += 1
            digits = "".join(g.digits for g in part[start:end])
            if total == 9 and self._ssn(digits):
                finds.append(_Find(part[start].begin, part[end - 1].end, PiiKind.SSN))
                start = end
            else:
                start += 1

    # -- e-mail and phone -------------------------------------------------------------------------------------

    def _contact_finds(self, text: str) -> list[_Find]:
        patterns = _patterns()
        finds: list[_Find] = []
        if "@" in text:
            finds += [_Find(m.start(), m.end(), PiiKind.EMAIL) for m in patterns.email.finditer(text)]
        finds += [_Find(m.start(), m.end(), PiiKind.PHONE) for m in patterns.phone.finditer(text)]
        if "+" in text:
            finds += [_Find(m.start(), m.end(), PiiKind.PHONE) for m in patterns.international.finditer(text)]
        return finds


def _merge(finds: list[_Find]) -> list[_Find]:
    """Overlapping finds become one, of the highest-priority kind among them."""
    merged: list[_Find] = []
    for find in sorted(finds, key=lambda f: (f.begin, f.end)):
        if merged and find.begin < merged[-1].end:
            last = merged[-1]
            kind = min(last.kind, find.kind, key=_PRIORITY.__getitem__)
            merged[-1] = _Find(last.begin, max(last.end, find.end), kind)
        else:
            merged.append(find)
    return merged


def _apply(text: str, finds: list[_Find]) -> RedactionResult:
    pieces: list[str] = []
    spans: list[MaskedSpan] = []
    position = new_position = 0
    for find in finds:
        pieces.append(text[position : find.begin])
        new_position += find.begin - position
        placeholder = find.kind.placeholder
        pieces.append(placeholder)
        spans.append(MaskedSpan(find.begin, find.end, find.kind, new_position, new_position + len(placeholder)))
        new_position += len(placeholder)
        position = find.end
    pieces.append(text[position:])
    return RedactionResult("".join(pieces), frozenset(f.kind for f in finds), tuple(spans))


@cache
def redactor_for(mode: RedactionMode) -> Redactor:
    """The shared redactor of a mode (patterns compiled and stdnum imported once per container)."""
    return Redactor(mode)


__all__ = ["MaskedSpan", "PiiKind", "RedactionMode", "RedactionResult", "Redactor", "redactor_for"]
