"""Ledger posting throughput against raw inserts of the same entry rows, in one run.

Posts N transfers (accruals to M members, then redemptions drawing on their lots) through the
store in batches, then inserts the same number of entry rows with a bare `executemany` into a
fresh SQLite file, and prints transfers per second and the ratio.

    python benchmarks/ledger.py [--transfers 20000] [--members 2000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from tenure.loyalty.ledger import Request, funder_account, member_account, redemption_account
from tenure.store import ledger
from tenure.store.db import Store


def requests(n: int, members: int) -> list[Request]:
    oem, redeemed = funder_account("oem"), redemption_account("bench")
    out = []
    for i in range(n):
        m = member_account("bench", f"c{i % members}")
        if i < n // 2:
            out.append(Request(f"a{i}", "accrue", oem, m, 100, at=float(i), expires_at=1e9 + i))
        else:
            out.append(Request(f"r{i}", "redeem", m, redeemed, 30, at=float(i)))
    return out


def main() -> None:
    """Print transfers per second through the ledger, raw entry inserts per second, the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transfers", type=int, default=20_000)
    ap.add_argument("--members", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=1_000)
    args = ap.parse_args()
    reqs = requests(args.transfers, args.members)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'tenure.db'}")
        t0 = time.perf_counter()
        ok = 0
        for i in range(0, len(reqs), args.batch):
            results = ledger.post_requests(store, reqs[i : i + args.batch], float(i))
            ok += results.count("ok")
        posted = time.perf_counter() - t0
        store.close()
        raw = sqlite3.connect(Path(tmp) / "raw.db")
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute(
            "CREATE TABLE e (transfer_id TEXT, account_id TEXT, amount INTEGER, "
            "PRIMARY KEY (transfer_id, account_id))"
        )
        rows = [
            (r.id, side, amount)
            for r in reqs
            for side, amount in ((r.debit, -r.amount), (r.credit, r.amount))
        ]
        t0 = time.perf_counter()
        for i in range(0, len(rows), 2 * args.batch):
            with raw:
                raw.executemany("INSERT INTO e VALUES (?, ?, ?)", rows[i : i + 2 * args.batch])
        bare = time.perf_counter() - t0
        raw.close()
    n = len(reqs)
    print(f"{n} transfers ({ok} posted) on {args.members} members, batches of {args.batch}")
    print(f"  ledger (locks, lots, balances)  {n / posted:10,.0f} transfers/s  ({posted:.2f} s)")
    print(f"  raw insert of the entry rows     {n / bare:10,.0f} transfers/s  ({bare:.2f} s)")
    print(f"  ratio ledger / raw              {bare / posted:10.3f}")


if __name__ == "__main__":
    main()
