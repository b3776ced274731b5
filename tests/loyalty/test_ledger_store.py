"""The ledger in the store: posting, idempotency, and two processes on one member at once."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from sqlalchemy import func, select

from tenure.loyalty.ledger import (
    Request,
    funder_account,
    member_account,
    redemption_account,
    verify,
)
from tenure.store import ledger
from tenure.store import schema as t
from tenure.store.db import Store

ANN = member_account("prog", "ann")
OEM = funder_account("oem")
REDEEMED = redemption_account("prog")


def test_posting_is_idempotent_and_two_phase_in_the_store(store_url: str) -> None:
    store = Store(store_url)
    assert ledger.post_requests(store, [Request("a1", "accrue", OEM, ANN, 100, at=1.0)], 1.0) == [
        "ok"
    ]
    results = ledger.post_requests(
        store,
        [
            Request("a1", "accrue", OEM, ANN, 100, at=1.0),  # replayed: same answer, no change
            Request("a1", "accrue", OEM, ANN, 999, at=1.0),  # same id, other payload: refused
            Request("r1", "redeem", ANN, REDEEMED, 70, at=2.0, pending=True),
            Request("r2", "redeem", ANN, REDEEMED, 40, at=2.0),  # only 30 available
            Request("p1", "post", pending_id="r1", at=3.0),
            Request("p2", "void", pending_id="r1", at=3.0),  # already posted
        ],
        3.0,
    )
    assert results == [
        "exists",
        "exists_with_different_payload",
        "ok",
        "exceeds_available",
        "ok",
        "pending_transfer_not_pending",
    ]
    with store.reader() as conn:
        book = ledger.whole_book(conn)
        sums = ledger.entry_sums(conn)
    assert verify(book) is None
    assert set(sums.values()) == {0}
    assert (book.account(ANN).balance, book.account(ANN).available) == (30, 30)
    assert book.lots["a1"].remaining == 30
    store.close()


def _redeem_many(url: str, name: str, n: int, results) -> None:
    store = Store(url, migrate_schema=False)
    got = Counter()
    for i in range(n):
        # Each process has its own requests and both send the shared ones.
        for rid in (f"{name}-{i}", f"shared-{i}"):
            (result,) = ledger.post_requests(
                store, [Request(rid, "redeem", ANN, REDEEMED, 1, at=float(i))], float(i)
            )
            got[(rid.split("-")[0] if rid.startswith("shared") else "own", result)] += 1
    results.put(dict(got))
    store.close()


def test_two_processes_on_one_member_neither_overdraw_nor_double_post_nor_lose(
    store_url: str,
) -> None:
    store = Store(store_url)
    ledger.post_requests(store, [Request("a1", "accrue", OEM, ANN, 150, at=0.0)], 0.0)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_redeem_many, args=(store_url, name, 60, results)) for name in ("p", "q")
    ]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    oks = sum(v for g in got for (_, result), v in g.items() if result == "ok")
    with store.reader() as conn:
        book = ledger.whole_book(conn)
        redemptions = conn.execute(
            select(func.count())
            .select_from(t.ledger_transfers)
            .where(t.ledger_transfers.c.kind == "redeem")
        ).scalar_one()
    assert verify(book) is None
    # 180 distinct requests (60 own each, 60 shared) for 150 points: exactly 150 posted, once each.
    assert redemptions == oks == 150
    assert book.account(ANN).balance == 0
    shared_ok = sum(
        v for g in got for (kind, result), v in g.items() if kind == "shared" and result == "ok"
    )
    shared_exists = sum(
        v for g in got for (kind, result), v in g.items() if kind == "shared" and result == "exists"
    )
    assert shared_ok <= 60 and shared_ok + shared_exists <= 120
    store.close()


def _confirm(url: str, name: str, pending_ids: list[str], results) -> None:
    store = Store(url, migrate_schema=False)
    out = [
        ledger.post_requests(store, [Request(f"{name}-{p}", "post", pending_id=p, at=5.0)], 5.0)[0]
        for p in pending_ids
    ]
    results.put(out)
    store.close()


def test_two_processes_confirming_the_same_holds_post_each_once(store_url: str) -> None:
    store = Store(store_url)
    holds = [f"h{i}" for i in range(40)]
    ledger.post_requests(
        store,
        [Request("a1", "accrue", OEM, ANN, 100, at=0.0)]
        + [Request(h, "redeem", ANN, REDEEMED, 2, at=1.0, pending=True) for h in holds],
        1.0,
    )
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_confirm, args=(store_url, n, holds, results)) for n in ("p", "q")]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    # Each hold is posted by exactly one of them; the other is told it is no longer pending.
    for a, b in zip(*got, strict=True):
        assert sorted([a, b]) == ["ok", "pending_transfer_not_pending"]
    with store.reader() as conn:
        book = ledger.whole_book(conn)
    assert verify(book) is None and book.account(ANN).balance == 20
    store.close()


def test_ledger_cli_balance_history_and_verify(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from tenure.cli import app
    from tenure.config import resolve

    ws = tmp_path / "ws"
    store = Store(resolve(ws).database_url)
    ann = member_account("default", "ann")
    ledger.post_requests(
        store,
        [
            Request("a1", "accrue", OEM, ann, 100, at=0.0, expires_at=86_400.0 * 30),
            Request("a2", "accrue", OEM, ann, 50, at=1.0),
            Request("r1", "redeem", ann, REDEEMED, 120, at=2.0, pending=True),
        ],
        2.0,
    )
    runner = CliRunner()
    balance = json.loads(
        runner.invoke(app, ["ledger", "balance", "ann", "--json", "-w", str(ws)]).stdout
    )
    assert (balance["posted"], balance["available"]) == (150, 30)
    assert [(lot["lot"], lot["reserved"]) for lot in balance["lots"]] == [("a1", 100), ("a2", 20)]
    history = json.loads(
        runner.invoke(app, ["ledger", "history", "ann", "--json", "-w", str(ws)]).stdout
    )
    assert [h["transfers"] for h in history] == [["r1"], ["a2"], ["a1"]]
    assert (history[0]["status"], history[0]["points"], history[0]["net"]) == ("pending", -120, 0)
    assert [ph["phase"] for ph in history[0]["phases"]] == ["held"]
    transfers = json.loads(
        runner.invoke(
            app, ["ledger", "history", "ann", "--transfers", "--json", "-w", str(ws)]
        ).stdout
    )
    assert [h["transfer_id"] for h in transfers] == ["r1", "a2", "a1"]
    ok = runner.invoke(app, ["ledger", "verify", "-w", str(ws)])
    assert ok.exit_code == 0 and "every invariant holds" in ok.stdout
    with store.transaction() as conn:  # tamper with a balance
        conn.execute(
            t.ledger_accounts.update()
            .where(t.ledger_accounts.c.account_id == ann)
            .values(posted_cr=151)
        )
    broken = runner.invoke(app, ["ledger", "verify", "-w", str(ws)])
    assert broken.exit_code == 1 and f"account {ann}: posted_cr is 151" in broken.stdout
    store.close()


def test_expire_run_expires_lots_and_voids_timed_out_holds_once(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from tenure.cli import app
    from tenure.config import resolve

    ws = tmp_path / "ws"
    store = Store(resolve(ws).database_url)
    ann = member_account("default", "ann")
    day = 86_400.0
    ledger.post_requests(
        store,
        [
            Request("a1", "accrue", OEM, ann, 100, at=0.0, expires_at=10 * day),
            Request("a2", "accrue", OEM, ann, 50, at=0.0),
            Request(
                "h1",
                "redeem",
                ann,
                redemption_account("default"),
                120,
                at=1.0,
                pending=True,
                timeout_s=3 * day,
            ),
        ],
        1.0,
    )
    runner = CliRunner()
    args = ["ledger", "expire", "--as-of", "1970-01-20T00:00:00Z", "--json", "-w", str(ws)]
    first = json.loads(runner.invoke(app, args).stdout)
    # The hold timed out on day 4 and is voided first; then all 100 points of a1 have lapsed.
    assert first == {"holds_voided": 1, "lots_expired": 1, "points_expired": 100}
    assert json.loads(runner.invoke(app, args).stdout) == {
        "holds_voided": 0,
        "lots_expired": 0,
        "points_expired": 0,
    }
    with store.reader() as conn:
        book = ledger.whole_book(conn)
    assert (book.account(ann).balance, book.account(ann).available) == (50, 50)
    assert verify(book) is None
    store.close()
