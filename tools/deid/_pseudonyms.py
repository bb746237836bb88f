"""Consistent pseudonyms: one keyed mapping for UIDs, identifiers, resource ids, names and dates.

Every replacement is a keyed hash (HMAC-SHA256) of the original, so the same original gets the same
pseudonym in every file of a case — a DICOM PatientID and the FHIR identifier it matches, a Study
Instance UID and the ImagingStudy that names it — and nobody without the key can map a pseudonym
back. Dates move by one shift for the whole case (the PS3.15 "Retain Longitudinal Temporal
Information with Modified Dates" option), so intervals between events are kept.

The :class:`Pseudonymizer` also remembers what it replaced, so free text (model answers, reports,
notes, the task) can be scrubbed of the same values, and a finished bundle can be searched for any
original that survived.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from okaflow._errors import ConfigurationError

__all__ = ["Pseudonymizer"]

# How far dates move when no shift is given: back by 30 days to a year, chosen by the key.
_SHIFT_RANGE_DAYS = (30, 365)
# Originals shorter than these are replaced where they are structured, but not searched for in free
# text: a two-letter name would hit "OB", a short identifier "10" would hit "10 mg".
_MIN_NAME = 3
_MIN_IDENTIFIER = 5

_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?$")
_ISO_IN_TEXT = re.compile(r"(?<![0-9])(\d{4})-(\d{2})-(\d{2})(?![0-9])")
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip
_MONTH = (
    r"(?P<month>"
    + "|".join(
        f"{m[:3]}(?:{m[3:]}|t)?" if m == "September" else f"{m[:3]}(?:{m[3:]})?" if len(m) > 3 else m for m in _MONTHS
    )
    + r")\.?"
)
# "14 July 2004", "July 14, 2004", "July 2004" (English, as clinical notes and model answers write them).
_WORDED_IN_TEXT = re.compile(
    rf"\b(?:(?P<day>\d{{1,2}}) {_MONTH} (?P<year>\d{{4}})|{_MONTH.replace('month', 'month2')} "
    rf"(?:(?P<day2>\d{{1,2}}), )?(?P<year2>\d{{4}}))\b"
)


@dataclass
class Pseudonymizer:
    """Keyed, consistent replacements for one case (or one cohort, when the key is reused).

    Args:
        key: The secret the pseudonyms derive from. Keep it to de-identify more data of the same patients
            consistently; never share it with the bundle.
        date_shift_days: Days added to every date (negative: earlier).
    """

    key: bytes
    date_shift_days: int
    # original -> (replacement, kind); kind names what an original is in messages, never its value.
    replaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    _exact: re.Pattern[str] | None = field(default=None, repr=False)
    _names: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, key: bytes | str | None = None, date_shift_days: int | None = None) -> Pseudonymizer:
        """A pseudonymizer with ``key`` (random when None) and ``date_shift_days`` (derived from the key
        when None: 30 to 365 days back)."""
        secret = secrets.token_bytes(32) if key is None else key.encode() if isinstance(key, str) else key
        if not secret:  # an empty HMAC key would key every pseudonym with nothing
            raise ConfigurationError("the pseudonym key is empty", hint="use a key file holding a long random secret")
        if date_shift_days is None:
            low, high = _SHIFT_RANGE_DAYS
            draw = int.from_bytes(hmac.new(secret, b"date-shift", hashlib.sha256).digest()[:8], "big")
            date_shift_days = -(low + draw % (high - low + 1))
        return cls(key=secret, date_shift_days=date_shift_days)

    @property
    def key_id(self) -> str:
        """A fingerprint of the key (not the key): tells whether two bundles were made with the same one."""
        return hashlib.sha256(b"okaflow-deid-key\0" + self.key).hexdigest()[:16]

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def _remember(self, original: str, replacement: str, kind: str) -> None:
        shortest = _MIN_NAME if "name" in kind else _MIN_IDENTIFIER
        if len(original) >= shortest and original != replacement and original not in self.replaced:
            self.replaced[original] = (replacement, kind)
            self._exact = self._names = None

    # -- structured values -----------------------------------------------------------------------
    def uid(self, original: str) -> str:
        """A DICOM UID under the UUID-derived root ``2.25`` (PS3.5 B.2), at most 64 characters."""
        new = "2.25." + str(int.from_bytes(self._digest("uid", original)[:16], "big"))
        self._remember(original, new, "DICOM UID")
        return new

    def identifier(self, original: str) -> str:
        """A pseudonym for an identifier value (MRN, PatientID, accession number, …); the same value gets
        the same pseudonym wherever it appears, so DICOM and FHIR still match each other."""
        new = "ANON" + self._digest("identifier", original.strip()).hex()[:12].upper()
        self._remember(original, new, "identifier")
        return new

    def resource_id(self, resource_type: str, original: str) -> str:
        """A FHIR logical id (``[A-Za-z0-9-.]{1,64}``) for ``resource_type/original``."""
        new = self._digest("resource", f"{resource_type}/{original}").hex()[:24]
        # Only the "Type/id" form is scrubbed from text: a bare id is often a word ("metformin").
        self._remember(f"{resource_type}/{original}", f"{resource_type}/{new}", "resource id")
        return new

    def uuid(self, original: str) -> str:
        """A UUID (for ``urn:uuid:`` full URLs) derived from ``original``."""
        h = self._digest("uuid", original.lower()).hex()
        new = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
        self._remember(original, new, "resource id")
        return new

    def person_name(self, family: str, given: list[str], role: str) -> tuple[str, list[str]]:
        """A pseudonym name for a person; ``role`` ("Patient", "Practitioner", …) becomes its family name so
        a reader still sees who is who. The whole name, in its usual written forms, is remembered for free
        text (case-insensitively); a patient's single names too, case-sensitively as written and in
        capitals — a clinician's are not, since "Lung" or "Hand" must stay words of the record."""
        whole = " ".join([*given, family]).strip()
        if not whole:
            return family, given
        tag = self._digest("name", " ".join(whole.upper().split())).hex()[:6].upper()
        new_family, new_given = f"{role}-{tag}", ["Anon"]
        new_whole = f"Anon {new_family}"
        forms = {
            whole,
            " ".join([family, *given]).strip(),
            f"{family}, {' '.join(given)}".strip(", "),
            "^".join([family, *given]).strip("^"),
        }
        for form in forms:
            self._remember(form, new_whole, "person name")
        if role == "Patient":
            for part in [family, *given]:
                for written in (part, part.upper()):
                    self._remember(written, new_family if part == family else "Anon", "patient name part")
        return new_family, new_given

    def dicom_person_name(self, value: str, role: str) -> str:
        """A DICOM PN (``Family^Given^Middle^Prefix^Suffix``) pseudonymised like :meth:`person_name`."""
        parts = str(value).split("=")[0].split("^")
        family, given = parts[0], [p for p in parts[1:3] if p]
        new_family, new_given = self.person_name(family, given, role)
        return "^".join([new_family, *new_given])

    def organisation(self, original: str, kind: str = "Organization") -> str:
        """A pseudonym for an institution or place name."""
        new = f"{kind}-{self._digest('organisation', original.strip().upper()).hex()[:6].upper()}"
        self._remember(original, new, "organisation name")
        return new

    # -- dates -------------------------------------------------------------------------------------
    def shift_fhir_date(self, value: str) -> str:
        """A FHIR ``date``/``dateTime``/``instant`` moved by the shift, at the same precision; other strings
        come back unchanged."""
        m = _FHIR_DATE.match(value)
        if not m:
            return value
        year, month, day, rest = m.groups()
        try:
            moved = date(int(year), int(month or 7), int(day or (15 if month else 1))) + self._shift
        except ValueError:
            return value
        if day is None:
            return f"{moved.year:04d}" if month is None else f"{moved.year:04d}-{moved.month:02d}"
        return moved.isoformat() + (rest or "")

    def shift_dicom_date(self, value: str, vr: str) -> str:
        """A DICOM DA (``YYYYMMDD``) or DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) moved by the shift; other values
        (malformed, ranges) are emptied, since they cannot be moved honestly."""
        text = str(value).strip()
        if vr == "DA" or vr == "DT":
            head, tail = text[:8], text[8:]
            try:
                moved = datetime.strptime(head, "%Y%m%d").date() + self._shift
            except ValueError:
                return ""
            return moved.strftime("%Y%m%d") + (tail if vr == "DT" else "")
        return text

    @property
    def _shift(self) -> timedelta:
        return timedelta(days=self.date_shift_days)

    # -- free text ---------------------------------------------------------------------------------
    def scrub_text(self, text: str) -> str:
        """``text`` with every remembered original replaced by its pseudonym and every ISO date shifted."""
        if not text:
            return text
        exact, names = self._patterns()
        if exact is not None:
            text = exact.sub(lambda m: self.replaced[m.group(0)][0], text)
        if names is not None:
            lowered = {k.lower(): v for k, (v, kind) in self.replaced.items() if kind == "person name"}
            text = names.sub(lambda m: lowered[m.group(0).lower()], text)
        text = _ISO_IN_TEXT.sub(self._shift_iso_match, text)
        return _WORDED_IN_TEXT.sub(self._shift_worded_match, text)

    def _shift_iso_match(self, m: re.Match[str]) -> str:
        return self.shift_fhir_date(m.group(0))

    def _shift_worded_match(self, m: re.Match[str]) -> str:
        """A date written in words, moved and written back in the same form (month and year alone: the
        middle of the month moves, so the month named is the one the shift lands in)."""
        month_name = m["month"] or m["month2"]
        month = next(i for i, name in enumerate(_MONTHS, 1) if name.lower().startswith(month_name[:3].lower()))
        day, year = m["day"] or m["day2"], int(m["year"] or m["year2"])
        try:
            moved = date(year, month, int(day) if day else 15) + self._shift
        except ValueError:
            return m.group(0)
        written_in_full = month_name.lower() == _MONTHS[month - 1].lower()
        name = _MONTHS[moved.month - 1] if written_in_full else _MONTHS[moved.month - 1][:3]
        if m["day"]:
            return f"{moved.day} {name} {moved.year}"
        if m["day2"]:
            return f"{name} {moved.day}, {moved.year}"
        return f"{name} {moved.year}"

    def _patterns(self) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
        if self._exact is None and self._names is None:
            exact = [k for k, (_, kind) in self.replaced.items() if kind != "person name"]
            names = [k for k, (_, kind) in self.replaced.items() if kind == "person name"]
            self._exact = _alternation(exact, re.NOFLAG)
            self._names = _alternation(names, re.IGNORECASE)
        return self._exact, self._names

    def found_in(self, text: str) -> set[str]:
        """The kinds of original (never the values) that ``text`` still holds, under the same matching rules
        as :meth:`scrub_text`."""
        exact, names = self._patterns()
        kinds = set()
        for pattern in (exact, names):
            if pattern is not None:
                for m in pattern.finditer(text):
                    key = m.group(0)
                    kinds.add(self.replaced[key][1] if key in self.replaced else "person name")
        return kinds


def _alternation(values: list[str], flags: re.RegexFlag) -> re.Pattern[str] | None:
    if not values:
        return None
    # Longest first, and never inside a longer token: "1.2.3" must not match inside "1.2.3.4".
    body = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?<![0-9]\.)(?:{body})(?![A-Za-z0-9])(?!\.[0-9])", flags)
