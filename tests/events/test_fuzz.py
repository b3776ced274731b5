"""Fuzzing the ingest path with hostile lines (issue 13): deep nesting, huge strings, NUL,
invalid UTF-8, bidi and control characters in ids, out-of-range numbers, far-future and ancient
times, duplicate keys, random bytes. Whatever comes in, the parser yields one item a line, a run
completes with its counts adding up, and a line known to be bad is only ever a reject."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import uuid
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenure.events.envelope import Event
from tenure.events.parse import MAX_PAYLOAD_BYTES, Horizon, LineParser, Reject, read_bounded
from tenure.policy.model import default_policy
from tenure.runtime.pipeline import Pipeline
from tenure.store import queries
from tenure.store.db import Store
from tests.fixtures.hostile import CUSTOM, HIDDEN, ID_FIELDS, event, jline

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
parser = LineParser([CUSTOM])
Line = tuple[bytes, bool | None]  # the line; True: must be rejected, False: must be accepted
counter = itertools.count()


def fresh() -> str:
    return f"e-{uuid.uuid4().hex[:12]}-{next(counter)}"


def valid() -> st.SearchStrategy[Line]:
    def line(days: int) -> Line:
        at = NOW - dt.timedelta(days=days)
        return jline(event(fresh(), occurred_at=f"{at:%Y-%m-%dT%H:%M:%SZ}")), False

    return st.integers(min_value=0, max_value=60).map(line)


@st.composite
def deep(draw: st.DrawFn) -> Line:
    depth = draw(st.integers(min_value=65, max_value=3_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    value = opener * depth + b"1" + closer * depth
    where = draw(st.sampled_from(["top", "unknown field", "payload"]))
    if where == "top":
        return value, True
    if where == "payload":
        return jline(event(fresh(), type=CUSTOM, payload=0)).replace(
            b":0}", b":" + value + b"}"
        ), True
    return jline(event(fresh(), x=0)).replace(b'"x":0', b'"x":' + value), True


@st.composite
def huge(draw: st.DrawFn) -> Line:
    size = draw(st.integers(min_value=MAX_PAYLOAD_BYTES + 1, max_value=3 * MAX_PAYLOAD_BYTES))
    if draw(st.booleans()):
        return jline(event(fresh(), type=CUSTOM, payload={"text": "a" * size})), True
    field = draw(st.sampled_from(ID_FIELDS))
    return jline({**event(fresh()), field: "i" * draw(st.integers(201, 5_000))}), True


@st.composite
def hidden(draw: st.DrawFn) -> Line:
    """A NUL anywhere, or a control, bidi or zero-width character in an id."""
    char = draw(st.sampled_from(sorted(HIDDEN.values())))
    where = draw(st.sampled_from([*ID_FIELDS, "payload value", "payload key"]))
    if where in ID_FIELDS:
        return jline({**event(fresh()), where: f"a{char}b"}), True
    payload = {"v": f"x{char}"} if where == "payload value" else {f"k{char}": 1}
    return jline(event(fresh(), type=CUSTOM, payload=payload)), char == "\x00"


@st.composite
def bad_utf8(draw: st.DrawFn) -> Line:
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80"]))
    return jline(event(fresh(), customer_id="cXX")).replace(b"XX", junk), True


@st.composite
def numbers(draw: st.DrawFn) -> Line:
    if draw(st.booleans()):
        amount = draw(st.sampled_from(["1e400", "-1e400", "1e13", "-0.5", "1e1000000", "NaN"]))
        obj = event(fresh(), type="purchase", payload={"amount": 0})
        return jline(obj).replace(b'"amount":0', b'"amount":' + amount.encode()), True
    big = draw(st.integers(min_value=2**63, max_value=2**200))
    sign = draw(st.sampled_from([b"", b"-"]))
    if sign:
        big += 1
    obj = event(fresh(), type=CUSTOM, payload={"n": 0})
    return jline(obj).replace(b'"n":0', b'"n":' + sign + str(big).encode()), True


@st.composite
def times(draw: st.DrawFn) -> Line:
    when = draw(
        st.one_of(
            # More than a day past NOW, and before 1970, whatever the offset.
            st.datetimes(dt.datetime(2026, 6, 4), dt.datetime(2199, 12, 31)),
            st.datetimes(dt.datetime(1, 1, 2), dt.datetime(1969, 12, 30)),
        )
    )
    offset = draw(st.sampled_from(["Z", "+14:00", "-12:00"]))
    return jline(event(fresh(), occurred_at=f"{when:%Y-%m-%dT%H:%M:%S}{offset}")), True


@st.composite
def duplicate_keys(draw: st.DrawFn) -> Line:
    """Duplicate keys: the last one wins (JSON leaves it to the reader); never a crash."""
    key = draw(st.sampled_from(["event_id", "customer_id", "occurred_at", "type"]))
    second = {"event_id": fresh(), "customer_id": "c\u202e", "occurred_at": "2150-01-01T00:00Z"}
    extra = orjson.dumps({key: second.get(key, "purchase")})[1:-1]
    return jline(event(fresh()))[:-1] + b"," + extra + b"}", None


def hostile() -> st.SearchStrategy[Line]:
    garbage = st.binary(max_size=300).map(lambda b: (b.replace(b"\n", b" "), None))
    kinds = [deep(), huge(), hidden(), bad_utf8(), numbers(), times(), duplicate_keys(), garbage]
    return st.one_of(*kinds, valid())


def batches() -> st.SearchStrategy[list[Line]]:
    # A valid first line: the run has a newest event for the others to be ahead of.
    return st.tuples(valid(), st.lists(hostile(), min_size=1, max_size=12)).map(
        lambda t: [t[0], *t[1]]
    )


def parsed(lines: list[Line]) -> list[Event | Reject]:
    data = b"\n".join(line for line, _ in lines) + b"\n"
    horizon = Horizon(dt.timedelta(days=1), lambda: NOW)
    return list(parser.parse_stream(read_bounded(io.BytesIO(data)), horizon))


def check(lines: list[Line], got: list[Event | Reject]) -> None:
    assert len(got) == len(lines)
    for n, ((_, bad), item) in enumerate(zip(lines, got, strict=True), start=1):
        if isinstance(item, Reject):
            assert item.line_no == n
            assert bad is not False, item
            assert item.field and item.reason.startswith(item.field.removesuffix("…"))
            assert item.field.isprintable() and item.reason.isprintable()
            assert len(item.raw) <= 4096 and len(item.field) <= 200
        else:
            assert bad is not True, item


@settings(max_examples=150, deadline=None)
@given(batches())
def test_the_parser_yields_one_item_a_line_and_rejects_every_bad_one(lines: list[Line]) -> None:
    check(lines, parsed(lines))


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=batches())
def test_a_run_of_hostile_lines_completes_and_its_counts_add_up(
    tmp_path: Path, lines: list[Line]
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'fuzz.db'}")
    try:
        got = parsed(lines)
        check(lines, got)
        # A source of its own: the same bad line of the same source is stored once.
        summary = Pipeline(store, default_policy()).run(iter(got), fresh())
        assert summary.read == len(lines)
        assert summary.read == summary.accepted + summary.duplicates + summary.rejected
        assert summary.rejected == sum(isinstance(g, Reject) for g in got)
        with store.reader() as conn:
            stored = queries.rejects(conn, limit=10_000, run_id=summary.run_id)
        assert len(stored) == summary.rejected
    finally:
        store.close()
