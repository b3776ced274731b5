"""Money with a currency (issue 15): amounts keep their currency, the parser records the rate to
the workspace's reporting currency in force at the event's time, features count in the reporting
currency, and a currency with no rate is a reject, never a silent default."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tenure.cli import app
from tenure.events.envelope import Event
from tenure.events.money import parse_rates
from tenure.events.parse import LineParser, RawLine, Reject
from tenure.features.state import CustomerState, apply_all

runner = CliRunner()
RATES = "currency,effective_from,rate\nUSD,2026-01-01,0.9\nUSD,2026-03-01,0.8\nGBP,2026-01-01,1.2\n"


def line(
    event_id: str, at: str, amount: float, currency: str | None = None, **extra: object
) -> bytes:
    payload: dict[str, object] = {"amount": amount, **extra}
    if currency is not None:
        payload["currency"] = currency
    body = {
        "event_id": event_id,
        "type": "purchase",
        "customer_id": "c-1",
        "occurred_at": f"{at}T10:00:00Z",
        "payload": payload,
    }
    return json.dumps(body).encode()


def test_rates_take_effect_on_their_day_and_bad_files_name_the_line() -> None:
    rates = parse_rates(RATES)
    at = lambda d: dt.datetime.fromisoformat(f"{d}T12:00:00+00:00")  # noqa: E731
    assert rates.rate("EUR", at("2020-01-01")) == 1.0
    assert rates.rate("USD", at("2026-02-28")) == 0.9
    assert rates.rate("USD", at("2026-03-01")) == 0.8
    assert rates.rate("USD", at("2025-12-31")) is None
    assert rates.rate("JPY", at("2026-03-01")) is None
    for bad, words in [
        ("currency,rate\n", "header"),
        ("currency,effective_from,rate\nusd,2026-01-01,1\n", "line 2"),
        ("currency,effective_from,rate\nUSD,2026-01-01,-1\n", "positive"),
        ("currency,effective_from,rate\nUSD,01/01/2026,1\n", "YYYY-MM-DD"),
        ("currency,effective_from,rate\nUSD,2026-01-01,1\nUSD,2026-01-01,2\n", "two rates"),
        ("currency,effective_from,rate\nEUR,2026-01-01,1\n", "another currency"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_rates(bad)


def test_the_parser_records_the_currency_and_the_rate_in_force() -> None:
    parser = LineParser(rates=parse_rates(RATES))
    got = [
        parser.parse(RawLine(1, raw))
        for raw in (
            line("a", "2026-02-10", 100, "USD"),
            line("b", "2026-03-10", 100, "USD"),
            line("c", "2026-03-10", 100),  # no currency: the reporting one, said so
            line("d", "2026-03-10", 100, "EUR", __rate__=7.0),  # a sent rate is not trusted
        )
    ]
    assert all(isinstance(e, Event) for e in got), got
    assert [(e.payload.currency, e.payload.rate) for e in got] == [  # type: ignore[union-attr]
        ("USD", 0.9),
        ("USD", 0.8),
        ("EUR", None),
        ("EUR", None),
    ]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (line("x", "2026-03-10", 100, "JPY"), "JPY is neither the reporting currency (EUR)"),
        (line("y", "2025-12-10", 100, "USD"), "no USD rate to EUR is in force on 2025-12-10"),
    ],
)
def test_a_currency_without_a_rate_is_a_reject_not_a_default(raw: bytes, words: str) -> None:
    for got in (
        LineParser(rates=parse_rates(RATES)).parse(RawLine(1, raw)),
        next(iter(LineParser(rates=parse_rates(RATES)).parse_stream([raw]))),
    ):
        assert isinstance(got, Reject) and got.field == "payload.currency"
        assert words in got.reason


def test_features_count_in_the_reporting_currency() -> None:
    parser = LineParser(rates=parse_rates(RATES))
    events = [
        parser.parse(RawLine(1, raw))
        for raw in (
            line("a", "2026-02-10", 100, "USD"),  # 90 EUR
            line("b", "2026-03-10", 100, "GBP"),  # 120 EUR
            line("c", "2026-03-11", 10),  # 10 EUR
        )
    ]
    state = apply_all(CustomerState("c-1"), events)  # type: ignore[arg-type]
    assert state.totals["purchase"] == (3, 220_000_000)
    usd = parse_rates("currency,effective_from,rate\nEUR,2026-01-01,1.25\n", "USD")
    in_usd = LineParser(rates=usd).parse(RawLine(1, line("e", "2026-03-10", 8, "EUR")))
    assert isinstance(in_usd, Event) and in_usd.payload.rate == 1.25


def test_mixed_currency_purchases_show_in_the_reporting_currency(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rates.csv").write_text(RATES)
    (ws / "tenure.yaml").write_text("money: {currency: EUR, rates: rates.csv}\n")
    monkeypatch.setenv("TENURE_DATABASE_URL", store_url)
    path = tmp_path / "events.jsonl"
    lines = [
        line("a", "2026-03-10", 100, "USD"),
        line("b", "2026-03-10", 50, "GBP"),
        line("c", "2026-03-10", 25),
        line("d", "2026-03-10", 5, "JPY"),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["run", "--events", str(path), "-w", str(ws), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["accepted"], summary["rejected"]) == (3, 1)
    shown = runner.invoke(app, ["customers", "show", "c-1", "-w", str(ws), "--json"])
    features = json.loads(shown.stdout)["features"]
    assert features["spend_total"] == pytest.approx(80 + 60 + 25)
    assert features["windows"]["purchase_amount_30d"] == pytest.approx(165)
    bad = runner.invoke(app, ["rejects", "list", "-w", str(ws), "--json"])
    [reject] = json.loads(bad.stdout)
    assert reject["field"] == "payload.currency" and "JPY" in reject["reason"]


def test_a_bad_money_setting_is_refused_with_its_file(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "tenure.yaml").write_text("money: {currency: euro}\n")
    result = runner.invoke(app, ["stats", "-w", str(ws)])
    assert result.exit_code != 0 and "money.currency" in result.output
    (ws / "tenure.yaml").write_text("money: {rates: missing.csv}\n")
    result = runner.invoke(app, ["stats", "-w", str(ws)])
    assert result.exit_code != 0 and "money.rates" in result.output
