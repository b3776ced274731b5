"""CSV input: a header row, a mapping from columns to the envelope, and what an export needs to
be imported as it is: its time zone and date format, its number format, value maps, a row filter,
and line items grouped into one event.

Every line after the header is accounted for. A row that cannot become an event is a `Reject`
naming the field and the reason; a group of rows becomes one event or one reject (never part of
an order); a row the mapping leaves out (`where` does not hold, or a value maps to null) is
skipped: it is not an event, so it is not counted in a run's `read`.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import math
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from tenure import expressions
from tenure.errors import ConfigError, InputError, field_errors
from tenure.events.envelope import ENVELOPE_FIELDS, MAX_DEPTH, PAYLOADS, Event
from tenure.events.parse import (
    MAX_LINE_BYTES,
    Cut,
    Horizon,
    LineParser,
    Reject,
    cut_reject,
    too_deep,
)

Scalar = str | int | float | bool | None
_FIELDS = tuple(f for f in ENVELOPE_FIELDS if f != "payload")  # it has columns of its own
_BOM = b"\xef\xbb\xbf"  # spreadsheet exports start files with one
_TEMPLATE = re.compile(r"\{([^{}]+)\}")  # "order-{order_id}": a value built from columns
_DECIMALS = (".", ",")
_PLAIN = re.compile(r"[+-]?\d+(?:\.\d+)?")  # a number as the schema reads it from text
# Rows one group may hold (their bytes): an order's line items, not a whole file in memory.
MAX_GROUP_BYTES = 1024 * 1024


@dataclass(frozen=True)
class CsvMapping:
    """How CSV columns become envelope fields, and how an export's values are read.

    `columns` maps an envelope field to a column name; `payload` maps a payload field to a column;
    either may give a template over columns instead (`"order-{order_id}"`). `constants` fixes a
    field for every row (typically `type` and `source`). A column named `payload.X` with no
    mapping goes to payload field X; a column named `payload` holds JSON.

    The rest is off unless given: `timezone` for times without an offset, `date_format`
    (strptime; ISO 8601 and offsets such as `+0100` are read too), `decimal` and `thousands` for
    the payload's number fields, `delimiter`, `values` (per field, a value as exported -> the
    value to use; null skips the row), `where` (a zen expression over the row's columns; rows
    where it does not hold are skipped), and `group_by` columns whose consecutive rows make one
    event, adding up the payload fields listed in `sum`.
    """

    columns: Mapping[str, str]
    payload: Mapping[str, str]
    constants: Mapping[str, str]
    timezone: str | None = None
    date_format: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    delimiter: str = ","
    values: Mapping[str, Mapping[str, Scalar]] = field(default_factory=dict)
    where: str | None = None
    group_by: tuple[str, ...] = ()
    sum: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = _field_problem(self) or _format_problem(self) or _rest_problem(self)
        if problem is not None:
            raise ConfigError(problem)

    @classmethod
    def identity(cls) -> CsvMapping:
        """Columns already named like the envelope."""
        return cls({}, {}, {})


def _is_field(name: str) -> bool:
    return name in _FIELDS or (name.startswith("payload.") and len(name) > len("payload."))


def _field_problem(m: CsvMapping) -> str | None:
    for section, names in (("columns", m.columns), ("values", m.values)):
        if bad := [
            n for n in names if not (_is_field(n) and (section == "values" or n in _FIELDS))
        ]:
            return (
                f"{section}: {bad[0]!r} is not a field "
                f"(envelope fields: {', '.join(_FIELDS)}; payload fields: payload.X)"
            )
    for name in m.sum:
        if not name.startswith("payload.") or not _is_field(name):
            return f"sum: {name!r} is not a payload field (write payload.X)"
    if m.sum and not m.group_by:
        return "sum: adds up the rows of a group; give group_by too"
    return None


def _format_problem(m: CsvMapping) -> str | None:
    if m.timezone is not None:
        try:
            zoneinfo.ZoneInfo(m.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return f"timezone: unknown IANA time zone {m.timezone!r} (e.g. Europe/Berlin, UTC)"
    if m.date_format is not None:
        if "%" not in m.date_format:
            return (
                f"date_format: {m.date_format!r} has no % directive "
                "(write it as strptime does, e.g. %Y-%m-%d %H:%M:%S)"
            )
        try:
            sample = dt.datetime(2026, 3, 1, 10, 0, 0, tzinfo=dt.UTC).strftime(m.date_format)
            dt.datetime.strptime(sample, m.date_format)
        except (ValueError, re.error) as exc:  # a directive twice is a regular-expression error
            return f"date_format: {exc}"
    if m.decimal is not None and m.decimal not in _DECIMALS:
        return f"decimal: {m.decimal!r} must be '.' or ','"
    if m.thousands is not None:
        t = m.thousands
        if len(t) != 1 or t.isdigit() or t in "+-" or t == (m.decimal or "."):
            return f"thousands: {t!r} must be one character, not a digit, sign or the decimal mark"
    return None


def _rest_problem(m: CsvMapping) -> str | None:
    if len(m.delimiter) != 1 or m.delimiter in '\r\n"':
        return f"delimiter: {m.delimiter!r} must be one character (not a quote or line break)"
    if m.where is not None and (problem := expressions.check(m.where)) is not None:
        return f"where: the expression does not parse: {problem}"
    return None


class _MapFile(BaseModel):
    """The mapping file (`--csv-map`), as written."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    columns: dict[str, str] = {}
    payload: dict[str, str] = {}
    constants: dict[str, str] = {}
    timezone: str | None = None
    date_format: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    delimiter: str = ","
    values: dict[str, dict[str, Scalar]] = {}
    where: str | None = None
    group_by: str | list[str] = []
    sum: list[str] = []

    @field_validator("values", mode="before")
    @classmethod
    def _keys_are_text(cls, values: Any) -> Any:
        """YAML reads yes/no/on/off/true/false unquoted as booleans: never what an export holds."""
        for name, table in values.items() if isinstance(values, dict) else ():
            for key in table if isinstance(table, dict) else ():
                if isinstance(key, bool):
                    raise ValueError(
                        f"{name}: a key was read as {str(key).lower()}; YAML reads yes, no, on, "
                        "off, true and false unquoted as booleans: quote the key"
                    )
        return values


def mapping_of(document: Any, options: Mapping[str, str | None] | None = None) -> CsvMapping:
    """The mapping a mapping file's document describes, with `options` (set ones only) over it;
    a ConfigError naming the key when it does not make one."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError("expected a mapping (columns, payload, constants, timezone, ...)")
    document = {**document, **{k: v for k, v in (options or {}).items() if v is not None}}
    try:
        spec = _MapFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(field_errors(exc)) from None
    columns = {k: v for k, v in spec.columns.items() if not k.startswith("payload.")}
    payload = {k.removeprefix("payload."): v for k, v in spec.columns.items() if k not in columns}
    group_by = (spec.group_by,) if isinstance(spec.group_by, str) else tuple(spec.group_by)
    return CsvMapping(
        columns,
        {**payload, **spec.payload},
        spec.constants,
        timezone=spec.timezone,
        date_format=spec.date_format,
        decimal=spec.decimal,
        thousands=spec.thousands,
        delimiter=spec.delimiter,
        values=spec.values,
        where=spec.where,
        group_by=group_by,
        sum=tuple(spec.sum),
    )


def _sources(mapping: CsvMapping) -> list[str]:
    """Every column the mapping reads by name (templates' columns included)."""
    named = [*mapping.columns.values(), *mapping.payload.values()]
    plain = [c for c in named if not _TEMPLATE.search(c)]
    built = [name for c in named for name in _TEMPLATE.findall(c)]
    return [*plain, *built, *mapping.group_by]


def check_header(header: Sequence[str], mapping: CsvMapping) -> None:
    """Refuse a mapping that names columns the file does not have (every row would fail)."""
    missing = sorted({c for c in _sources(mapping) if c not in header})
    if missing:
        raise InputError(
            f"CSV header has no column {', '.join(map(repr, missing))} "
            f"(columns are: {', '.join(header)})"
        )


class _Unfit(Exception):
    """A row's value the mapping cannot use: the field and the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = name, reason


@functools.lru_cache(maxsize=256)  # keyed by the input's types: bounded
def _number_fields(event_type: Any) -> frozenset[str]:
    """The payload fields of a built-in type that hold numbers."""
    payload = PAYLOADS.get(event_type) if isinstance(event_type, str) else None
    if payload is None:
        return frozenset()
    info = msgspec.inspect.type_info(payload)
    return frozenset(f.encode_name for f in info.fields if _numeric(f.type))  # type: ignore[attr-defined]


def _numeric(t: msgspec.inspect.Type) -> bool:
    if isinstance(t, msgspec.inspect.UnionType):
        return any(_numeric(x) for x in t.types)
    return isinstance(t, msgspec.inspect.IntType | msgspec.inspect.FloatType)


class _Plan:
    """A mapping made ready for one file: zone, number pattern, templates, sums."""

    def __init__(self, mapping: CsvMapping) -> None:
        self.mapping = mapping
        self.zone = zoneinfo.ZoneInfo(mapping.timezone) if mapping.timezone else None
        self.times = mapping.timezone is not None or mapping.date_format is not None
        self.formatted = mapping.decimal is not None or mapping.thousands is not None
        self.point = mapping.decimal or "."
        sep = re.escape(mapping.thousands or "")
        group = rf"\d{{1,3}}(?:{sep}\d{{3}})+|" if mapping.thousands else ""
        self.number = re.compile(rf"[+-]?(?:{group}\d+)(?:{re.escape(self.point)}\d+)?")
        self.example = f"1{mapping.thousands or ''}234{self.point}5"
        self.templates = {
            name: source
            for name, source in [
                *mapping.columns.items(),
                *((f"payload.{k}", v) for k, v in mapping.payload.items()),
            ]
            if _TEMPLATE.search(source)
        }
        self.summed = frozenset(s.removeprefix("payload.") for s in mapping.sum)

    def value(self, name: str, text: Any) -> Any:
        """A field's value through its value map (null: the row is skipped)."""
        table = self.mapping.values.get(name)
        if table is not None and isinstance(text, str) and text in table:
            return table[text]
        return text

    def filled(self, name: str, row: Mapping[str, str]) -> str:
        """A template's text with the row's columns put in."""
        template = self.templates[name]
        for column in _TEMPLATE.findall(template):
            if row[column] == "":
                raise _Unfit(name, f"{name}: column {column!r} is empty (template {template!r})")
        return _TEMPLATE.sub(lambda m: row[m[1]], template)

    def number_text(self, name: str, text: str) -> str:
        """A number as the export writes it, as the schema reads it."""
        cell = text.strip()
        if not self.number.fullmatch(cell):
            raise _Unfit(name, f"{name}: {text!r} is not a number written like {self.example}")
        if self.mapping.thousands:
            cell = cell.replace(self.mapping.thousands, "")
        return cell.replace(self.point, ".")

    def time(self, text: str) -> dt.datetime:
        """An event time as the export writes it: aware, in the mapping's zone when naive."""
        t = _parsed_time(text, self.mapping.date_format)
        if t is None:
            fmt = self.mapping.date_format
            wanted = f"the date format {fmt!r} or ISO 8601" if fmt else "ISO 8601"
            raise _Unfit("occurred_at", f"occurred_at: {text!r} is not a time in {wanted}")
        if t.tzinfo is not None:
            return t
        if self.zone is None:
            raise _Unfit(
                "occurred_at",
                f"occurred_at: {text!r} has no time zone (give the mapping a timezone)",
            )
        return _localized(t, self.zone)


def _parsed_time(text: str, fmt: str | None) -> dt.datetime | None:
    """`text` read with `fmt` (followed or not by an offset), else as ISO 8601; None if neither."""
    text = text.strip()
    offsets = ("%z", " %z") if fmt and "%z" not in fmt else ()
    for f in (fmt, *(f"{fmt}{z}" for z in offsets)) if fmt else ():
        try:
            return dt.datetime.strptime(text, f)
        except ValueError:
            continue
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _localized(t: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """A local time in `zone`, with its UTC offset. Of the hour the clocks go back, the first
    (summer time) is taken; a time in the hour they skip does not exist and is refused."""
    try:
        aware = t.replace(tzinfo=zone, fold=0)
        exists = aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) == t
        offset = aware.utcoffset()
    except (OverflowError, ValueError):
        raise _Unfit("occurred_at", f"occurred_at: {t} is out of range") from None
    if not exists or offset is None:
        raise _Unfit(
            "occurred_at",
            f"occurred_at: {t.isoformat(sep=' ')} does not exist in {zone.key} "
            "(the clocks skip that hour)",
        )
    return t.replace(tzinfo=dt.timezone(offset))


def _row_object(row: Mapping[str, str], plan: _Plan) -> dict[str, Any] | None:
    """The envelope of one row as the mapping reads it; None when a value maps to null."""
    m = plan.mapping
    obj: dict[str, Any] = {}
    payload: dict[str, Any] = {}
    used: set[str] = set()
    for name in _FIELDS:
        column = m.columns.get(name, name)
        if name in plan.templates:
            text = plan.filled(name, row)
        elif column in row:
            used.add(column)
            text = row[column]
        else:
            continue
        if (value := plan.value(name, text)) is None:
            return None
        if value != "":
            obj[name] = value
    for name, column in m.payload.items():
        key = f"payload.{name}"
        text = plan.filled(key, row) if key in plan.templates else row.get(column, "")
        used.add(column)
        if (value := plan.value(key, text)) is None:
            return None
        if value != "":
            payload[name] = value
    if _extra_columns(row, used, payload, plan) is None:
        return None
    if plan.formatted:  # the export's number format is the columns', not the constants'
        for name in _number_fields(m.constants.get("type", obj.get("type"))) | plan.summed:
            if isinstance(value := payload.get(name), str):
                payload[name] = plan.number_text(f"payload.{name}", value)
    for name, value in m.constants.items():
        if name.startswith("payload."):
            payload[name.removeprefix("payload.")] = value
        else:
            obj[name] = value
    obj["payload"] = payload
    return _fitted(obj, plan)


def _extra_columns(
    row: Mapping[str, str], used: set[str], payload: dict[str, Any], plan: _Plan
) -> dict[str, Any] | None:
    """Columns the mapping does not name: `payload.X` ones and a `payload` JSON column."""
    for column, text in row.items():
        if column in used or (text == "" and column not in plan.mapping.values):
            continue
        if column == "payload":
            if too_deep(text.encode(errors="surrogateescape"), MAX_DEPTH - 1) is not None:
                raise _Unfit("payload", f"payload: nested deeper than {MAX_DEPTH} levels")
            try:
                extra = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise _Unfit("payload", f"payload: invalid JSON ({exc})") from None
            if not isinstance(extra, dict):
                raise _Unfit("payload", "payload: the payload column must hold a JSON object")
            payload.update(extra)
        elif column.startswith("payload."):
            if (value := plan.value(column, text)) is None:
                return None
            if value != "":
                payload[column.removeprefix("payload.")] = value
    return payload


def _fitted(obj: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    """The time read in the export's format and zone; the `sum` fields checked to add up."""
    if plan.times and isinstance(t := obj.get("occurred_at"), str):
        obj["occurred_at"] = plan.time(t)
    payload = obj["payload"]
    for name in plan.summed:
        value = payload.get(name)
        if value is None or (_PLAIN.fullmatch(value) if isinstance(value, str) else _finite(value)):
            continue
        raise _Unfit(f"payload.{name}", f"payload.{name}: {value!r} is not a number to add up")
    return obj


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(slots=True)
class _Row:
    """One record (or a group of them): its envelope, or why not; neither when it is skipped."""

    line_no: int
    raw: bytes
    obj: dict[str, Any] | None = None
    problem: tuple[str, str] | None = None
    key: tuple[str, ...] | None = None

    @property
    def skipped(self) -> bool:
        """Left out by the mapping (`where`, or a value mapped to null)."""
        return self.obj is None and self.problem is None


def _row(line_no: int, raw: bytes, cells: dict[str, str], plan: _Plan) -> _Row:
    """One record of cells read through the plan."""
    row = _Row(line_no, raw)
    m = plan.mapping
    if m.group_by:
        key = tuple(cells[c] for c in m.group_by)
        row.key = key if any(key) else None
    if m.where is not None:
        holds, error = expressions.holds(m.where, {"row": cells, **cells})
        if error is not None:
            row.problem = ("where", f"where: cannot be evaluated on this row ({error})")
            return row
        if not holds:
            return row
    try:
        row.obj = _row_object(cells, plan)
    except _Unfit as bad:
        row.problem = (bad.field, bad.reason)
    if m.group_by and row.key is None and not row.skipped:
        columns = ", ".join(m.group_by)
        row.obj, row.problem = None, ("group_by", f"group_by: {columns} empty; in no group")
    return row


class _LineTap:
    """Feeds lines to the csv reader and keeps the raw bytes of the current record."""

    def __init__(self, lines: Iterable[bytes | Cut]) -> None:
        self._lines = iter(lines)
        self.taken: list[bytes] = []
        self.cut: Cut | None = None  # an over-long line within the current record

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        raw = next(self._lines)
        if isinstance(raw, Cut):  # the csv reader sees an empty line; the record is refused
            self.cut = raw
            self.taken.append(raw.head)
            return "\n"
        if not self.taken and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        self.taken.append(raw)
        # surrogateescape lets one bad row be rejected without losing the rest of the file.
        return raw.decode("utf-8", errors="surrogateescape")


def read_csv(
    lines: Iterable[bytes | Cut],
    parser: LineParser,
    mapping: CsvMapping,
    horizon: Horizon | None = None,
) -> Iterator[Event | Reject]:
    """Parse CSV with a header row; line numbers count the header as line 1.

    Every line after the header is accounted for: blank lines and malformed rows become rejects
    carrying the exact bytes read (a prefix of an over-long record), rows the mapping leaves out
    are skipped, and a group of rows is one event or one reject. Events go through the
    `horizon` as in `LineParser.parse_stream`.
    """
    tap = _LineTap(lines)
    reader = csv.reader(tap, delimiter=mapping.delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return
    if tap.cut is not None:
        raise InputError(f"CSV header is {tap.cut.size} bytes; at most {MAX_LINE_BYTES}")
    check_header(header, mapping)
    plan = _Plan(mapping)
    admit = (horizon or Horizon.unbounded()).admit
    rows = _rows(tap, reader, header, plan)
    for item in _grouped(rows, plan) if mapping.group_by else rows:
        if isinstance(item, Reject):
            yield item
        elif item.problem is not None:
            yield Reject(item.line_no, item.raw, *item.problem)
        elif item.obj is not None:
            event = parser.parse_object(item.line_no, item.raw, item.obj)
            yield event if isinstance(event, Reject) else admit(item.line_no, item.raw, event)


def _rows(tap: _LineTap, reader: Any, header: list[str], plan: _Plan) -> Iterator[_Row | Reject]:
    """The records after the header: read through the plan, or rejected as unreadable."""
    line_no = 1
    while True:
        tap.taken, tap.cut = [], None
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
        if tap.cut is not None:
            yield cut_reject(start, tap.cut)
        elif (problem := _unreadable(header, cells)) is not None:
            yield Reject(start, raw, "line", problem)
        else:
            yield _row(start, raw, dict(zip(header, cells, strict=True)), plan)


def _unreadable(header: list[str], cells: list[str]) -> str | None:
    """Why a record's cells cannot be read as a row, or None."""
    if not cells or all(c == "" for c in cells):
        return "line: blank"
    if len(cells) != len(header):
        return f"line: {len(cells)} cells, header has {len(header)}"
    if any(_has_surrogate(v) for v in cells):
        return "line: invalid UTF-8"
    return None


def _has_surrogate(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _grouped(rows: Iterable[_Row | Reject], plan: _Plan) -> Iterator[_Row | Reject]:
    """Consecutive rows with the same `group_by` values as one row; skipped rows are left out,
    and a group seen again after another one is refused (it would be half an order)."""
    group: list[_Row] = []
    size = 0  # bytes of the group's rows; past MAX_GROUP_BYTES they are counted, not kept
    closed: dict[tuple[str, ...], int] = {}  # a group's values -> its first line
    for row in rows:
        if isinstance(row, Reject) or row.key is None:
            if isinstance(row, Reject) or not row.skipped:
                yield row
            continue
        if row.skipped:
            continue
        if group and row.key != group[0].key:
            yield _closed(group, size, plan, closed)
            group, size = [], 0
        if size <= MAX_GROUP_BYTES:
            group.append(row)
        size += len(row.raw) + 1
    if group:
        yield _closed(group, size, plan, closed)


def _closed(group: list[_Row], size: int, plan: _Plan, closed: dict[tuple[str, ...], int]) -> _Row:
    """A finished group as one row: its events' fields merged and summed, or the first problem."""
    first, key = group[0], group[0].key
    assert key is not None
    merged = _Row(first.line_no, b"\n".join(r.raw for r in group), key=key)
    label = ", ".join(f"{c} {v!r}" for c, v in zip(plan.mapping.group_by, key, strict=True))
    seen = closed.setdefault(key, first.line_no)
    if seen != first.line_no:
        merged.problem = (
            "group_by",
            f"group_by: {label} was read before, from line {seen}; the rows of a group must be "
            f"next to each other (sort the export by {', '.join(plan.mapping.group_by)})",
        )
    elif size > MAX_GROUP_BYTES:
        merged.problem = (
            "group_by",
            f"group_by: the rows of {label} hold {size} bytes; a group may hold at most "
            f"{MAX_GROUP_BYTES} (is the export sorted, and group_by the right column?)",
        )
    elif (bad := next((r for r in group if r.problem is not None), None)) is not None:
        name, reason = bad.problem  # type: ignore[misc]
        whole = f" (line {bad.line_no}; no row of {label} is imported)" if len(group) > 1 else ""
        merged.problem = (name, reason + whole)
    else:
        try:
            merged.obj = _merged([(r.line_no, r.obj) for r in group], plan.summed, label)  # type: ignore[misc]
        except _Unfit as unfit:
            merged.problem = (unfit.field, unfit.reason)
    return merged


def _merged(rows: list[tuple[int, dict[str, Any]]], summed: frozenset[str], label: str) -> dict:
    """The envelope of a group: the fields its rows share, the `sum` fields added up."""
    first_line, first = rows[0]
    payload = dict(first["payload"])
    for line_no, obj in rows[1:]:
        for name in {*first, *obj} - {"payload"}:
            if first.get(name) != obj.get(name):
                raise _differ(name, label, (first_line, first.get(name)), (line_no, obj.get(name)))
        for name in ({*payload, *obj["payload"]}) - summed:
            if payload.get(name) != obj["payload"].get(name):
                a, b = (first_line, payload.get(name)), (line_no, obj["payload"].get(name))
                raise _differ(f"payload.{name}", label, a, b)
    for name in summed:
        terms = [Decimal(str(o["payload"][name])) for _, o in rows if name in o["payload"]]
        if terms:
            payload[name] = format(sum(terms, Decimal(0)), "f")
    return {**first, "payload": payload}


def _differ(name: str, label: str, a: tuple[int, Any], b: tuple[int, Any]) -> _Unfit:
    hint = ' (build it from the group\'s columns, e.g. "order-{order_id}")'
    return _Unfit(
        name,
        f"{name}: the rows of {label} differ ({a[1]!r} on line {a[0]}, {b[1]!r} on line {b[0]}); "
        f"rows of a group must agree on every field but those in sum"
        + (hint if name == "event_id" else ""),
    )
