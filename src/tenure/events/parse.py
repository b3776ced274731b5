"""Parsers: raw lines (JSONL) or CSV rows in, events or reject records out.

Nothing is lost: a line that cannot become an event becomes a `Reject` carrying its raw bytes, its
line number and a reason that names the field and what was expected.

Nothing hostile gets through either, and nothing hostile stops a run: a line is read in bounded
chunks (`read_bounded`), refused before decoding when it nests deeper than `MAX_DEPTH` or holds a
NUL character (which PostgreSQL cannot store), its ids (a payload's `*_id` fields too) must be
printable, and its time may not be far ahead of the run's newest event (`Horizon`). A reject
keeps at most `MAX_REJECT_RAW` bytes of its input, printable field and reason text, and the
length and sha256 of the whole input.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec
import orjson

from tenure.events.envelope import (
    DEFAULT_MAX_FUTURE_SKEW,
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    MONEY_TYPES,
    Event,
    event_union,
    id_problem,
    ids_problem,
    split_payload,
)
from tenure.events.money import Rates

if TYPE_CHECKING:  # see `__getattr__` at the end
    from tenure.events.csv_import import CsvMapping as CsvMapping
    from tenure.events.csv_import import check_header as check_header
    from tenure.events.csv_import import read_csv as read_csv

# A line longer than this cannot hold a payload under the limit; it is refused before parsing so
# one runaway line cannot exhaust memory.
MAX_LINE_BYTES = MAX_PAYLOAD_BYTES + 8 * 1024
# What a reject keeps of its input; beyond it, the length and the sha256 of the whole.
MAX_REJECT_RAW = 4 * 1024
_MAX_FIELD_CHARS, _MAX_REASON_CHARS = 200, 2000  # rejects.field is a VARCHAR(200)
_CHUNK = 1024 * 1024  # how much of an over-long line is read at a time (and then dropped)
_BOM = b"\xef\xbb\xbf"  # spreadsheet exports start files with one
_NUL = b"\\u0000"  # how JSON writes a NUL character (a raw one is not valid JSON)
_INT64 = (-(2**63), 2**63 - 1)  # what the stores' JSON encoder can write


def _printable(text: str, limit: int) -> str:
    """`text` with what a terminal would act on escaped, at most `limit` characters."""
    if not isinstance(text, str):  # not ours to judge
        return text
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class RawLine:
    """One unit of input: its 1-based line number and the exact bytes read."""

    line_no: int
    raw: bytes


@dataclass(frozen=True, slots=True)
class Reject:
    """An input line that did not become an event, kept with the reason.

    `size` and `sha256` always describe the whole input: given for input that was cut before it
    got here (`cut_reject`), worked out from `raw` otherwise. Input over `MAX_REJECT_RAW` bytes is
    cut to that prefix, and the reason says so too. Field and reason are made printable and
    bounded: they come from the input and end up in a database and on a terminal.
    """

    line_no: int
    raw: bytes
    field: str
    reason: str
    size: int | None = None  # bytes of the whole input (set by `__post_init__` when not given)
    sha256: str | None = None  # hex sha256 of the whole input (likewise)

    def __post_init__(self) -> None:
        set_ = partial(object.__setattr__, self)
        reason = self.reason
        if self.size is None or self.sha256 is None:  # `raw` is the whole input
            set_("size", len(self.raw))
            set_("sha256", hashlib.sha256(self.raw).hexdigest())
        if len(self.raw) > MAX_REJECT_RAW:
            set_("raw", self.raw[:MAX_REJECT_RAW])
            reason += _kept(self.size or 0, self.sha256 or "")
        set_("field", _printable(self.field, _MAX_FIELD_CHARS))
        set_("reason", _printable(reason, _MAX_REASON_CHARS))


def _kept(size: int, sha256: str) -> str:
    return f" [input {size} bytes, sha256 {sha256}; its first {MAX_REJECT_RAW} bytes kept]"


@dataclass(frozen=True, slots=True)
class Cut:
    """A line longer than a reader holds: its first bytes, its length and its sha256."""

    head: bytes
    size: int
    sha256: str


def read_bounded(stream: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes | Cut]:
    """The stream's lines, terminators kept; a line over `limit` bytes comes as a `Cut`.

    The over-long line is read on in chunks of a megabyte, hashed and dropped, so a 200 MB line
    costs a megabyte of memory, and the lines after it keep their numbers.
    """
    cap = limit + 2  # room for a "\r\n"
    readline = stream.readline
    for line in iter(partial(readline, cap), b""):
        if len(line) == cap and line[-1] != 10:  # no "\n" within the cap: over-long
            yield _rest_of(line, readline)
        else:
            yield line


def _rest_of(first: bytes, readline: Callable[[int], bytes]) -> Cut:
    digest = hashlib.sha256(first)
    size = len(first)
    while chunk := readline(_CHUNK):
        if chunk[-1] == 10:  # the line ends here; its terminator is not part of it
            body = chunk.rstrip(b"\r\n")
            digest.update(body)
            size += len(body)
            break
        digest.update(chunk)
        size += len(chunk)
    return Cut(first[:MAX_REJECT_RAW], size, digest.hexdigest())


def cut_reject(line_no: int, cut: Cut) -> Reject:
    """The reject of an over-long line."""
    return Reject(
        line_no,
        cut.head,
        "payload",
        _too_long(cut.size) + _kept(cut.size, cut.sha256),
        cut.size,
        cut.sha256,
    )


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


# A JSON string (escapes included) or a bracket: enough to measure nesting without decoding.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def too_deep(raw: bytes, limit: int = MAX_DEPTH) -> str | None:
    """The top-level field under which `raw` (JSON) nests deeper than `limit`, or None.

    Counting brackets settles almost every line at once; only a line with more than `limit`
    opening brackets is scanned, strings skipped, iteratively.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return None
    depth = 0
    key: bytes | None = None
    field = "line"
    for m in _TOKEN.finditer(raw):
        c = raw[m.start()]
        if c == 0x22:  # a string: at depth 1 it may be the key of the value that follows
            if depth == 1:
                key = m.group()
        elif c == 0x7B or c == 0x5B:  # { or [
            depth += 1
            if depth == 2:
                field = _key_name(key) if raw.lstrip()[:1] == b"{" and key else "line"
            if depth > limit:
                return field
        else:
            depth -= 1
    return None


def _key_name(token: bytes | None) -> str:
    try:
        name = orjson.loads(token or b"")
    except orjson.JSONDecodeError:
        return "line"
    return name if isinstance(name, str) and name else "line"


def nul_field(value: Any, path: str = "") -> str | None:
    """The field (dotted path) of the first string or key in `value` holding a NUL, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        x, at = stack.pop()
        if isinstance(x, str):
            if "\x00" in x:
                return at or "line"
        elif isinstance(x, dict):
            for k, v in reversed(x.items()):
                if "\x00" in k:
                    return at or "line"  # the object whose key it is
                stack.append((v, f"{at}.{k}" if at else k))
        elif isinstance(x, list):
            items = list(enumerate(x))
            stack.extend((v, f"{at}.{i}" if at else str(i)) for i, v in reversed(items))
    return None


def free_problem(payload: Any, path: str = "payload") -> tuple[str, str] | None:
    """(field, reason) for what a free-form payload (a registered type's) may not hold: nesting
    deeper than `MAX_DEPTH` (counting the envelope) or an integer no store can write."""
    stack: list[tuple[Any, str, int]] = [(payload, path, 2)]
    while stack:
        x, at, depth = stack.pop()
        if isinstance(x, dict | list):
            if depth > MAX_DEPTH:
                return path, f"{path}: nested deeper than {MAX_DEPTH} levels"
            pairs = x.items() if isinstance(x, dict) else enumerate(x)
            stack.extend((v, f"{at}.{k}", depth + 1) for k, v in pairs)
        elif isinstance(x, int) and not isinstance(x, bool) and not _INT64[0] <= x <= _INT64[1]:
            return at, f"{at}: integer out of range (at most 64 bits)"
    return None


def hostile(raw: bytes) -> tuple[str, str] | None:
    """(field, reason) when a line must not be decoded at all: too deep, or holding a NUL."""
    if (field := too_deep(raw)) is not None:
        return field, f"{field}: nested deeper than {MAX_DEPTH} levels"
    if _NUL in raw:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None  # not JSON: the decoder says why
        if (field := nul_field(value)) is not None:
            return field, _nul_reason(field)
    return None


def _nul_reason(field: str) -> str:
    return f"{field}: holds a NUL character (\\u0000), which cannot be stored"


_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


class Horizon:
    """How far ahead an event may be: at most `skew` past a reference, else it is refused.

    - Decisions at the wall clock (`live`: live runs, the API): the reference is `now()`.
    - A replay (a file or standard input, at event time): the newest event so far, but never
      earlier than `now()` when there is a clock to ask. So a history in the past is never
      refused for its gaps (a customer silent for a week is no typo), one dated ahead of the
      clock must move on in steps of at most `skew`, and an event dated 2150 in a 2026 history
      is refused, the run's first event too.
    - `newest`: the newest event the workspace stored before this input (its watermark), so a
      first event is held to what came before it. With neither a clock nor a stored event, a
      first event has nothing to be ahead of.

    `limit` is a bound every event at or below it passes; it lags behind (it is worked out again
    only when an event passes it), so the usual event costs two comparisons.
    """

    __slots__ = ("limit", "live", "newest", "now", "skew")

    def __init__(
        self,
        skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW,
        now: Callable[[], dt.datetime] | None = None,
        *,
        live: bool = False,
        newest: dt.datetime | None = None,
    ) -> None:
        self.skew = skew
        self.now = now
        self.live = live and now is not None
        self.newest = _NEVER if newest is None else newest
        self.limit = _NEVER  # the first event has it worked out

    @classmethod
    def unbounded(cls) -> Horizon:
        """A horizon no event passes: it only keeps the newest event."""
        h = cls()
        h.limit = dt.datetime.max.replace(tzinfo=dt.UTC)
        return h

    def _reference(self, t: dt.datetime) -> dt.datetime:
        if self.live:
            return self.now()  # type: ignore[misc]
        if self.now is not None:
            return max(self.newest, self.now())
        return t if self.newest is _NEVER else self.newest

    def within(self, t: dt.datetime) -> bool:
        """Work out the limit from the newest event so far and the clock: is `t` within it?"""
        self.limit = self._reference(t) + self.skew
        return t <= self.limit

    def admit(self, line_no: int, raw: bytes, event: Event) -> Event | Reject:
        """The event, or a reject when it is too far ahead (`parse_stream` inlines this)."""
        t = event.occurred_at
        if t > self.limit and not self.within(t):
            return self.refuse(line_no, raw, event)
        if t > self.newest:
            self.newest = t
        return event

    def refuse(self, line_no: int, raw: bytes, event: Event) -> Reject:
        """The reject of an event too far ahead, saying of what."""
        of = []
        if not self.live and self.newest is not _NEVER:
            of.append(f"the newest event so far ({self.newest.isoformat()})")
        if self.now is not None:
            of.append(f"the clock ({self.now().isoformat(timespec='seconds')})")
        return Reject(
            line_no,
            raw,
            "occurred_at",
            f"occurred_at: {event.occurred_at.isoformat()} is more than {_span(self.skew)} "
            f"ahead of {' and of '.join(of)} (ingest.max_future_skew)",
        )


def _span(skew: dt.timedelta) -> str:
    """A skew as people write it in tenure.yaml: 1d, 12h, 90m, 30s."""
    seconds = int(skew.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


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

    def __init__(
        self,
        extra_types: Iterable[str] = (),
        *,
        strict: Iterable[str] = (),
        zones: Mapping[str, str] | None = None,
        rates: Rates | None = None,
    ) -> None:
        self._union = event_union(tuple(sorted(extra_types)))
        self._decoder = msgspec.json.Decoder(self._union)
        self._rates = rates or Rates()  # the reporting currency, and rates to it
        self._strict = frozenset(strict)  # types whose payloads refuse extras and coercion
        self._zones = {k: zoneinfo.ZoneInfo(v) for k, v in (zones or {}).items()}

    def parse_stream(
        self, lines: Iterable[bytes | Cut], horizon: Horizon | None = None
    ) -> Iterator[Event | Reject]:
        """Parse a stream of raw lines (numbered from 1), in order: the ingest hot path.

        The usual line is decoded at once (see below); anything else goes through `parse`, which
        looks closer and works out the reason. Events then pass the `horizon` (none by default:
        the shell gives one, with the workspace's skew and a clock).
        """
        decode = self._decoder.decode
        h = horizon or Horizon.unbounded()
        newest, limit = h.newest, h.limit  # `Horizon.admit`, inlined: this runs for every line
        errors = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)
        for line_no, line in enumerate(lines, start=1):
            if line.__class__ is Cut:
                yield cut_reject(line_no, line)  # type: ignore[arg-type]
                continue
            raw: bytes = line.rstrip(b"\r\n")  # type: ignore[union-attr]
            if line_no == 1:
                raw = raw.removeprefix(_BOM)
            # The usual line: short, ASCII, without an escape (92 is "\\") or a DEL (127). Then
            # no string holds a NUL or anything an id may not (raw controls are not JSON), and
            # the decoder settles the rest (too deep a line makes it give up). Any other line
            # goes through `parse`, which looks closer.
            if len(raw) <= MAX_PAYLOAD_BYTES and 92 not in raw and 127 not in raw and raw.isascii():
                try:
                    event = decode(raw)
                except errors:
                    event = self.parse(RawLine(line_no, raw))
                else:
                    # A registered type's free-form payload and a context: bounded in depth and
                    # numbers.
                    if (event.payload.__class__ is dict or event.context is not None) and (
                        problem := _free_parts(event)
                    ):
                        event = Reject(line_no, raw, *problem)
            else:
                event = self.parse(RawLine(line_no, raw))
            if event.__class__ is not Reject and event.type in MONEY_TYPES:
                event = self.priced(line_no, raw, event)
            if event.__class__ is Reject:
                yield event
                continue
            t = event.occurred_at
            if t > limit:
                h.newest = newest
                if not h.within(t):
                    yield h.refuse(line_no, raw, event)
                    continue
                limit = h.limit
            if t > newest:
                newest = t
            yield event

    def parse(self, line: RawLine) -> Event | Reject:
        """Parse one line into an event, or a reject naming the field and the reason.

        One line has no run around it: how far ahead of the others it is, is `parse_stream`'s.
        """
        raw = line.raw
        if len(raw) > MAX_LINE_BYTES:
            return Reject(line.line_no, raw, "payload", _too_long(len(raw)))
        if (problem := hostile(raw)) is not None:
            return Reject(line.line_no, raw, *problem)
        try:
            event: Event = self._decoder.decode(raw)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError) as exc:
            evolved = self._evolved(line.line_no, raw, exc)
            if evolved is None:
                return _explain(line.line_no, raw, exc)
            if isinstance(evolved, Reject):
                return evolved
            event = evolved
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
        if (problem := _problem(event)) is not None:
            return Reject(line.line_no, raw, *problem)
        return self.priced(line.line_no, raw, event) if event.type in MONEY_TYPES else event

    def _evolved(self, line_no: int, raw: bytes, exc: Exception) -> Event | Reject | None:
        """A line the schema refused, read as the compatibility rule allows: extra payload
        fields kept aside (`Event.extra`), numbers in strings and epoch times coerced, a naive
        time in its source's declared zone. None when that cannot help (not a JSON object, a
        strict type); a reject names what is still wrong."""
        if not isinstance(exc, msgspec.ValidationError) or "missing required" in str(exc):
            return None  # nothing the rule tolerates: the schema's reason stands
        try:
            obj = msgspec.json.decode(raw)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            return None
        etype = obj.get("type") if isinstance(obj, dict) else None
        if not isinstance(etype, str) or etype in self._strict:
            return None
        if isinstance(payload := obj.get("payload"), dict):
            known, extra = split_payload(etype, payload)
            if extra:
                kept = obj.get("__extra__")
                obj["payload"] = known
                obj["__extra__"] = {**extra, **kept} if isinstance(kept, dict) else extra
        source = obj.get("source")
        zone = self._zones.get(source) if isinstance(source, str) else None
        obj["occurred_at"] = _time_of(obj.get("occurred_at"), zone)
        try:
            return msgspec.convert(obj, self._union, strict=False)  # type: ignore[no-any-return]
        except RecursionError:
            return None
        except msgspec.MsgspecError as still:
            field, reason = describe(still)
            # The same field refused both ways: the schema's own reason is the clearer one.
            return None if field == describe(exc)[0] else Reject(line_no, raw, field, reason)

    def parse_object(self, line_no: int, raw: bytes, obj: Mapping[str, Any]) -> Event | Reject:
        """Validate an already-built mapping (CSV rows), coercing strings where a number is due."""
        if (field := nul_field(obj)) is not None:
            return Reject(line_no, raw, field, _nul_reason(field))
        try:
            event: Event = msgspec.convert(dict(obj), self._union, strict=False)
        except (msgspec.MsgspecError, RecursionError) as exc:
            if isinstance(exc, RecursionError):  # a deep value in a constant or mapped column
                return Reject(line_no, raw, "line", f"line: nested deeper than {MAX_DEPTH} levels")
            field, reason = describe(exc)
            return Reject(line_no, raw, field, reason)
        if (problem := _problem(event)) is not None:
            return Reject(line_no, raw, *problem)
        return self.priced(line_no, raw, event) if event.type in MONEY_TYPES else event

    def priced(self, line_no: int, raw: bytes, event: Event) -> Event | Reject:
        """A money event with its currency (the reporting one when none was sent) and the rate
        to the reporting currency in force at its time; a reject when there is none."""
        p = event.payload
        rates = self._rates
        currency = p.currency or rates.currency
        rate = rates.rate(currency, event.occurred_at)
        if rate is None:
            reason = rates.problem(currency, event.occurred_at) or "payload.currency: no rate"
            return Reject(line_no, raw, "payload.currency", reason)
        kept = None if currency == rates.currency else rate
        if p.currency == currency and p.rate == kept:
            return event
        priced = msgspec.structs.replace(p, currency=currency, rate=kept)
        return msgspec.structs.replace(event, payload=priced)


def _problem(event: Event) -> tuple[str, str] | None:
    """(field, reason) when a decoded event's ids or free-form parts cannot be kept."""
    if (problem := ids_problem(event)) is not None:
        return problem
    return _free_parts(event)


def _free_parts(event: Event) -> tuple[str, str] | None:
    """The free-form parts of an event (a registered type's payload, extra payload fields, the
    context), bounded in depth and numbers."""
    if event.payload.__class__ is dict and (problem := free_problem(event.payload)):
        return problem
    if event.extra is not None:
        for key in event.extra:
            if (bad := id_problem(key)) is not None:
                field = f"payload.{_printable(key, _MAX_FIELD_CHARS)}"
                return field, f"{field}: a field's name {bad}"
        if problem := free_problem(event.extra):
            return problem
    if event.context is not None:
        return free_problem(event.context, "context")
    return None


# An epoch time this large can only be in milliseconds: in seconds it is past the year 5000.
_EPOCH_MS = 100_000_000_000


def _time_of(value: Any, zone: dt.tzinfo | None) -> Any:
    """An event time as the schema takes it: epoch seconds (or milliseconds) as given, a naive
    ISO time in its source's zone; anything else unchanged, for the schema to judge."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000 if abs(value) >= _EPOCH_MS else value
    if zone is not None and isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        if t.tzinfo is None:
            return t.replace(tzinfo=zone).isoformat()
    return value


def _too_long(size: int) -> str:
    return (
        f"payload: line is {size} bytes; an event may carry at most "
        f"{MAX_PAYLOAD_BYTES} bytes of payload"
    )


def _explain(line_no: int, raw: bytes, exc: Exception) -> Reject:
    """The reject of a line the decoder refused. The happy path pays for none of these checks;
    they only sharpen the reason."""
    if not raw.strip():
        return Reject(line_no, raw, "line", "line: blank")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Reject(line_no, raw, "line", f"line: invalid UTF-8 at byte {bad.start}")
    if isinstance(exc, UnicodeDecodeError):  # a string msgspec could not decode
        return Reject(line_no, raw, "line", f"line: invalid text ({exc.reason})")
    if isinstance(exc, RecursionError):  # not reached: `hostile` measures depth first
        return Reject(line_no, raw, "line", f"line: nested deeper than {MAX_DEPTH} levels")
    field, reason = describe(exc)  # type: ignore[arg-type]
    return Reject(line_no, raw, field, reason)


# CSV input lives in events/csv_import.py, which builds on this module; its names are still
# importable from here. Loaded on first use: a module-level import would make a cycle.
_CSV_NAMES = frozenset({"CsvMapping", "check_header", "read_csv"})


def __getattr__(name: str) -> Any:
    if name in _CSV_NAMES:
        from tenure.events import csv_import

        return getattr(csv_import, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
