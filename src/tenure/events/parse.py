"""Parsers: raw lines (JSONL) or CSV rows in, events or reject records out.

Nothing is lost: a line that cannot become an event becomes a `Reject` carrying its raw bytes, its
line number and a reason that names the field and what was expected.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from tenure.errors import InputError
from tenure.events.envelope import ENVELOPE_FIELDS, MAX_PAYLOAD_BYTES, Event, event_union

# A line longer than this cannot hold a payload under the limit; it is refused before parsing so
# one runaway line cannot exhaust memory.
MAX_LINE_BYTES = MAX_PAYLOAD_BYTES + 8 * 1024
_BOM = b"\xef\xbb\xbf"  # spreadsheet exports start files with one


@dataclass(frozen=True, slots=True)
class RawLine:
    """One unit of input: its 1-based line number and the exact bytes read."""

    line_no: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Reject:
    """An input line that did not become an event, kept with the reason."""

    line_no: int
    raw: bytes
    field: str
    reason: str


def read_lines(stream: Iterable[bytes]) -> Iterator[RawLine]:
    """Split a binary stream (or any iterable of lines) into numbered lines, terminators removed.

    A UTF-8 byte-order mark at the start of the stream is dropped (spreadsheet exports add one).
    """
    lines = iter(stream)
    first = next(lines, None)
    if first is None:
        return
    yield RawLine(1, first.removeprefix(_BOM).rstrip(b"\r\n"))
    for line_no, line in enumerate(lines, start=2):
        yield RawLine(line_no, line.rstrip(b"\r\n"))


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_OWN = re.compile(r"^(?P<name>[a-z_]+): (?P<msg>.*)$")  # our own validators name the field
_SHAPES = {
    "email": "not an email address (expected name@domain)",
    "phone": "not a phone number (digits, optionally +, spaces, dashes, dots, brackets)",
}
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")


def describe(error: msgspec.MsgspecError) -> tuple[str, str]:
    """Turn a decode or validation error into (field, reason) a producer can act on."""
    if not isinstance(error, msgspec.ValidationError):
        return "line", f"line: invalid JSON ({error})"
    m = _AT.match(str(error))
    msg, path = (m["msg"], m["path"] or "") if m else (str(error), "")
    field = path.lstrip(".").replace("].", "]").replace("[", ".").replace("]", "")
    if missing := _MISSING.match(msg):
        field = ".".join(p for p in (field, missing["name"]) if p)
        return field, f"{field}: field required"
    if unknown := _UNKNOWN.match(msg):
        field = ".".join(p for p in (field, unknown["name"]) if p)
        return field, f"{field}: unknown field"
    if field == "type" and msg.startswith("Invalid value"):
        tag = msg.removeprefix("Invalid value ").strip()
        return "type", f"type: unknown event type {tag} (see `tenure events schema` for the list)"
    if own := _OWN.match(msg):
        field = f"{field}.{own['name']}" if field else own["name"]
        return field, f"{field}: {own['msg']}"
    if field == "schema_version":
        return (
            field,
            f"schema_version: {msg.removeprefix('Invalid enum value ')} is not supported "
            f"(this version of tenure reads schema_version 1)",
        )
    if "matching regex" in msg and field.rsplit(".", 1)[-1] in _SHAPES:
        # The pattern also admits the event log's digests; the producer needs the plain rule.
        return field, f"{field}: {_SHAPES[field.rsplit('.', 1)[-1]]}"
    if "with a timezone component" in msg:
        msg = "time has no time zone (naive times are refused; add Z or an offset)"
    elif msg.startswith("Expected `object`") and not field:
        return "line", "line: expected a JSON object"
    return field or "line", f"{field or 'line'}: {msg}"


class LineParser:
    """Validates JSONL lines against the envelope; compiled once per set of registered types."""

    def __init__(self, extra_types: Iterable[str] = ()) -> None:
        self._union = event_union(tuple(sorted(extra_types)))
        self._decoder = msgspec.json.Decoder(self._union)

    def parse_stream(self, lines: Iterable[bytes]) -> Iterator[Event | Reject]:
        """Parse a stream of raw lines (numbered from 1), in order: the ingest hot path.

        A line that decodes and is short enough to hold no oversized payload is yielded at once;
        anything else goes through `parse`, which works out the reason.
        """
        decode = self._decoder.decode
        errors = (msgspec.MsgspecError, UnicodeDecodeError)
        for line_no, line in enumerate(lines, start=1):
            raw = line.rstrip(b"\r\n")
            if line_no == 1:
                raw = raw.removeprefix(_BOM)
            if len(raw) <= MAX_PAYLOAD_BYTES:
                try:
                    yield decode(raw)
                    continue
                except errors:
                    pass
            yield self.parse(RawLine(line_no, raw))

    def parse(self, line: RawLine) -> Event | Reject:
        """Parse one line into an event, or a reject naming the field and the reason."""
        raw = line.raw
        if len(raw) > MAX_LINE_BYTES:
            return Reject(
                line.line_no,
                raw,
                "payload",
                f"payload: line is {len(raw)} bytes; an event may carry at most "
                f"{MAX_PAYLOAD_BYTES} bytes of payload",
            )
        try:
            event: Event = self._decoder.decode(raw)
        except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
            # The happy path pays for none of these checks; they only sharpen the reason.
            if not raw.strip():
                return Reject(line.line_no, raw, "line", "line: blank")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                return Reject(line.line_no, raw, "line", f"line: invalid UTF-8 at byte {bad.start}")
            if isinstance(exc, UnicodeDecodeError):  # a string msgspec could not decode
                return Reject(line.line_no, raw, "line", f"line: invalid text ({exc.reason})")
            field, reason = describe(exc)
            return Reject(line.line_no, raw, field, reason)
        if len(raw) > MAX_PAYLOAD_BYTES:
            # Only a line this long can hold an oversized payload; measure it exactly.
            size = len(msgspec.json.encode(event.payload))
            if size > MAX_PAYLOAD_BYTES:
                return Reject(
                    line.line_no,
                    raw,
                    "payload",
                    f"payload: {size} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes",
                )
        return event

    def parse_object(self, line_no: int, raw: bytes, obj: Mapping[str, Any]) -> Event | Reject:
        """Validate an already-built mapping (CSV rows), coercing strings where a number is due."""
        try:
            return msgspec.convert(dict(obj), self._union, strict=False)  # type: ignore[no-any-return]
        except msgspec.MsgspecError as exc:
            field, reason = describe(exc)
            return Reject(line_no, raw, field, reason)


@dataclass(frozen=True)
class CsvMapping:
    """How CSV columns become envelope fields.

    `columns` maps an envelope field to a column name; `payload` maps a payload field to a column;
    `constants` fixes a field for every row (typically `type` and `source`). A column named
    `payload.X` with no mapping goes to payload field X; a column named `payload` holds JSON.
    """

    columns: Mapping[str, str]
    payload: Mapping[str, str]
    constants: Mapping[str, str]

    @classmethod
    def identity(cls) -> CsvMapping:
        """Columns already named like the envelope."""
        return cls({}, {}, {})


def _row_object(row: Mapping[str, str], mapping: CsvMapping) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    used: set[str] = set()
    for field in ENVELOPE_FIELDS[:-1]:  # the payload is built from its own columns
        column = mapping.columns.get(field, field)
        if column in row:
            used.add(column)
            if row[column] != "":
                obj[field] = row[column]
    for field, column in mapping.payload.items():
        used.add(column)
        if row.get(column, "") != "":
            payload[field] = row[column]
    for column, value in row.items():
        if column in used or value == "":
            continue
        if column == "payload":
            extra = orjson.loads(value)
            if not isinstance(extra, dict):
                raise ValueError("payload: the payload column must hold a JSON object")
            payload.update(extra)
        elif column.startswith("payload."):
            payload[column.removeprefix("payload.")] = value
    for field, value in mapping.constants.items():
        if field.startswith("payload."):
            payload[field.removeprefix("payload.")] = value
        else:
            obj[field] = value
    obj["payload"] = payload
    return obj


def check_header(header: Sequence[str], mapping: CsvMapping) -> None:
    """Refuse a mapping that names columns the file does not have (every row would fail)."""
    missing = sorted(
        {c for c in (*mapping.columns.values(), *mapping.payload.values()) if c not in header}
    )
    if missing:
        raise InputError(
            f"CSV header has no column {', '.join(map(repr, missing))} "
            f"(columns are: {', '.join(header)})"
        )


class _LineTap:
    """Feeds lines to the csv reader and keeps the raw bytes of the current record."""

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = iter(lines)
        self.taken: list[bytes] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        raw = next(self._lines)
        if not self.taken and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        self.taken.append(raw)
        # surrogateescape lets one bad row be rejected without losing the rest of the file.
        return raw.decode("utf-8", errors="surrogateescape")


def read_csv(
    lines: Iterable[bytes], parser: LineParser, mapping: CsvMapping
) -> Iterator[Event | Reject]:
    """Parse CSV with a header row; line numbers count the header as line 1.

    Every line after the header is accounted for: blank lines and malformed rows become rejects
    carrying the exact bytes read.
    """
    tap = _LineTap(lines)
    reader = csv.reader(tap)
    try:
        header = next(reader)
    except StopIteration:
        return
    check_header(header, mapping)
    line_no = 1
    while True:
        tap.taken = []
        start = line_no + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_no = reader.line_num
            yield Reject(start, b"".join(tap.taken), "line", f"line: malformed CSV ({exc})")
            continue
        line_no = reader.line_num
        raw = b"".join(tap.taken).rstrip(b"\r\n")
        if not cells or all(c == "" for c in cells):
            yield Reject(start, raw, "line", "line: blank")
            continue
        if len(cells) != len(header):
            yield Reject(start, raw, "line", f"line: {len(cells)} cells, header has {len(header)}")
            continue
        if any(_has_surrogate(v) for v in cells):
            yield Reject(start, raw, "line", "line: invalid UTF-8")
            continue
        try:
            obj = _row_object(dict(zip(header, cells, strict=True)), mapping)
        except orjson.JSONDecodeError as exc:
            yield Reject(start, raw, "payload", f"payload: invalid JSON ({exc})")
            continue
        except ValueError as exc:
            yield Reject(start, raw, "payload", str(exc))
            continue
        yield parser.parse_object(start, raw, obj)


def _has_surrogate(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)
