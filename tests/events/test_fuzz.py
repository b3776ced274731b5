"""Fuzzing the ingest path with hostile lines (issue 13): deep nesting, huge strings, NUL,
invalid UTF-8, bidi and control characters in ids (a payload's ids too), out-of-range numbers,
far-future and ancient times, duplicate keys, random bytes. Whatever comes in, the parser yields
one item a line; a run completes with its counts adding up, in the pipeline, through `tenure run`
and through `POST /v1/events`, on SQLite and PostgreSQL; and a line known to be bad is only ever
a reject. The API answers no 5xx, and every error it answers is a problem document.

Times are drawn around today (the real clock): `tenure run` and the API hold events to the wall
clock, so a line "far ahead" must be far ahead of it too."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tenure.cli import app
from tenure.events.envelope import Event
from tenure.events.parse import (
    MAX_PAYLOAD_BYTES,
    Horizon,
    LineParser,
    Reject,
    read_bounded,
    too_deep,
)
from tenure.policy.model import default_policy
from tenure.runtime.pipeline import Pipeline
from tenure.store import queries
from tenure.store.db import Store
from tests.fixtures.hostile import (
    CUSTOM,
    HIDDEN,
    ID_FIELDS,
    PAYLOAD_IDS,
    event,
    jline,
    problem_document,
    serve,
    with_payload_id,
    workspace,
)

# Today, at midnight UTC: valid lines are up to 60 days before it, "far ahead" is 3 days past it.
NOW = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
# Modest, so the suite stays fast (a run through the command line costs about 0.2 s).
FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
runner = CliRunner()
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
    where = draw(st.sampled_from([*ID_FIELDS, "payload id", "payload value", "payload key"]))
    if where in ID_FIELDS:
        return jline({**event(fresh()), where: f"a{char}b"}), True
    if where == "payload id":
        typed, payload, field = draw(st.sampled_from(PAYLOAD_IDS))
        return jline(with_payload_id(typed, payload, field, f"a{char}b", event_id=fresh())), True
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
            st.datetimes(
                NOW.replace(tzinfo=None) + dt.timedelta(days=3), dt.datetime(2199, 12, 31)
            ),
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
    for n, ((line, bad), item) in enumerate(zip(lines, got, strict=True), start=1):
        if isinstance(item, Reject):
            assert item.line_no == n
            assert bad is not False, item
            assert item.field and item.reason.startswith(item.field.removesuffix("…"))
            assert item.field.isprintable() and item.reason.isprintable()
            assert len(item.raw) <= 4096 and len(item.field) <= 200
            whole = line.rstrip(b"\r\n")  # what the reader hands on
            assert (item.size, item.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
        else:
            assert bad is not True, item


def rejected_lines(lines: list[Line]) -> set[int]:
    """The numbers of the lines the parser rejects (at NOW)."""
    return {n for n, item in enumerate(parsed(lines), start=1) if isinstance(item, Reject)}


@settings(max_examples=150, deadline=None)
@given(batches())
def test_the_parser_yields_one_item_a_line_and_rejects_every_bad_one(lines: list[Line]) -> None:
    check(lines, parsed(lines))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """The store on each backend, shared by a test's examples (each run has a source of its
    own: the same bad line of the same source is stored once)."""
    store = Store(store_url)
    yield store
    store.close()


@FUZZ
@given(lines=batches())
def test_a_run_of_hostile_lines_completes_and_its_counts_add_up(
    store: Store, lines: list[Line]
) -> None:
    got = parsed(lines)
    check(lines, got)
    summary = Pipeline(store, default_policy()).run(iter(got), fresh())
    assert summary.read == len(lines)
    assert summary.read == summary.accepted + summary.duplicates + summary.rejected
    assert summary.rejected == sum(isinstance(g, Reject) for g in got)
    with store.reader() as conn:
        stored = queries.rejects(conn, limit=10_000, run_id=summary.run_id)
    assert sorted(r["line_no"] for r in stored) == sorted(rejected_lines(lines))


@pytest.fixture
def cli(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A workspace on each backend for `tenure run`."""
    monkeypatch.setenv("TENURE_DATABASE_URL", store_url)
    yield workspace(tmp_path / "ws", store_url).workspace


@settings(FUZZ, max_examples=15)
@given(lines=batches())
def test_tenure_run_of_hostile_lines_exits_zero_and_only_rejects_come_of_them(
    cli: Path, lines: list[Line]
) -> None:
    path = cli / f"{fresh()}.jsonl"  # a source of its own
    path.write_bytes(b"\n".join(line for line, _ in lines) + b"\n")
    result = runner.invoke(app, ["run", "--events", str(path), "-w", str(cli), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["read"] == len(lines)
    assert summary["read"] == summary["accepted"] + summary["duplicates"] + summary["rejected"]
    run_id = summary["run_id"]
    listed = runner.invoke(app, ["rejects", "list", "--run-id", run_id, "-w", str(cli), "--json"])
    assert listed.exit_code == 0, listed.output
    numbers = sorted(r["line_no"] for r in json.loads(listed.stdout))
    # Every line known to be bad is a reject, none known to be good is, and the rest are what
    # the parser makes of them.
    assert len(numbers) == summary["rejected"]
    assert set(numbers) == rejected_lines(lines)
    assert {n for n, (_, bad) in enumerate(lines, 1) if bad} <= set(numbers)


@pytest.fixture
def api(store_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The service on each backend."""
    yield from serve(workspace(tmp_path / "ws", store_url))


def post(client: TestClient, authorization: str, body: bytes) -> Any:
    """POST /v1/events: never a server error, and every error a problem document."""
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code < 500, response.text[:2000]
    if response.status_code >= 400:
        problem_document(response)
    return response


def decodable(line: bytes) -> bool:
    """Whether `line` reads as one JSON value as an item of an array (msgspec, as the API),
    nesting well within what the API's decoder takes (it stops at the recursion limit)."""
    if too_deep(line, 500) is not None:
        return False
    try:
        return len(msgspec.json.decode(b"[" + line + b"]")) == 1
    except msgspec.DecodeError:
        return False


@FUZZ
@given(lines=batches())
def test_the_api_answers_hostile_events_with_rejects_never_a_server_error(
    api: tuple[TestClient, dict[str, str]], lines: list[Line]
) -> None:
    client, auth = api
    # The lines as they come, in one body: any that is not JSON makes all of it a 400.
    response = post(client, auth["ingest"], b"[" + b",".join(line for line, _ in lines) + b"]")
    sent = lines
    if response.status_code != 200:
        assert response.status_code == 400
        sent = [(line, bad) for line, bad in lines if decodable(line)]
        response = post(client, auth["ingest"], b"[" + b",".join(line for line, _ in sent) + b"]")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(sent)))
    for (line, bad), r in zip(sent, results, strict=True):
        if bad is True:
            assert r["status"] == "rejected", (line[:300], r)
        elif bad is False:
            assert r["status"] == "accepted", (line[:300], r)
        if r["status"] == "rejected":
            assert r["field"] and r["reason"].startswith(r["field"].removesuffix("…")), r
            assert r["field"].isprintable() and r["reason"].isprintable(), r
