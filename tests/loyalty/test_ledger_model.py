"""The ledger against a simple reference model, step by random step (hypothesis stateful).

Accruals (with and without expiry, some late: earlier event time than what came before),
redemptions (posted or two-phase with a timeout), confirmations, voids, expiries, clawbacks of
a purchase's points (within balance or allowing a negative balance) and replays of earlier
requests, with the same or a different payload. After every step: every invariant `verify`
knows, and balances and lots equal to the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tenure.loyalty.ledger import (
    Book,
    Request,
    breakage_account,
    funder_account,
    member_account,
    post,
    redemption_account,
    verify,
)

P = "prog"
MEMBERS = [member_account(P, c) for c in ("ann", "bo")]
FUNDER = funder_account("oem")
REDEEMED = redemption_account(P)
BREAKAGE = breakage_account(P)
DAY = 86_400.0


@dataclass
class RefLot:
    id: str
    expires: float | None
    earned: float
    remaining: int
    reserved: int = 0

    def key(self) -> tuple:
        return (self.expires if self.expires is not None else float("inf"), self.earned, self.id)


@dataclass
class RefMember:
    balance: int = 0
    pending_out: int = 0
    unbacked: int = 0
    lots: dict[str, RefLot] = field(default_factory=dict)

    def draw(self, amount: int) -> list[tuple[str, int]]:
        out, left = [], amount
        for lot in sorted(self.lots.values(), key=RefLot.key):
            free = lot.remaining - lot.reserved
            if left and free > 0:
                n = min(free, left)
                out.append((lot.id, n))
                left -= n
        return out


class LedgerVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = Book()
        self.members = {m: RefMember() for m in MEMBERS}
        self.pending: dict[str, tuple[str, int, list[tuple[str, int]], float | None]] = {}
        self.sent: list[Request] = []  # every request that was accepted, for replays
        self.accruals: list[tuple[str, str, int]] = []  # (id, member, amount)
        self.clock = 0.0
        self.n = 0

    def _id(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def _send(self, request: Request) -> str:
        self.book, (result,) = post(self.book, [request], self.clock)
        if result == "ok":
            self.sent.append(request)
        return result

    @rule(
        member=st.sampled_from(MEMBERS),
        amount=st.integers(1, 500),
        expiry_days=st.one_of(st.none(), st.integers(1, 60)),
        late_days=st.integers(0, 5),
    )
    def accrue(self, member, amount, expiry_days, late_days):
        at = self.clock - late_days * DAY  # a late event: earlier than the clock
        expires = at + expiry_days * DAY if expiry_days is not None else None
        rid = self._id()
        result = self._send(
            Request(rid, "accrue", FUNDER, member, amount, at=at, expires_at=expires)
        )
        assert result == "ok"
        m = self.members[member]
        m.balance += amount
        repay = min(amount, m.unbacked)
        m.unbacked -= repay
        if amount > repay:
            m.lots[rid] = RefLot(rid, expires, at, amount - repay)
        self.accruals.append((rid, member, amount))

    @rule(
        member=st.sampled_from(MEMBERS),
        amount=st.integers(1, 800),
        two_phase=st.booleans(),
        timeout_days=st.one_of(st.none(), st.integers(1, 3)),
    )
    def redeem(self, member, amount, two_phase, timeout_days):
        m = self.members[member]
        rid = self._id()
        timeout = timeout_days * DAY if timeout_days is not None else None
        request = Request(
            rid,
            "redeem",
            member,
            REDEEMED,
            amount,
            at=self.clock,
            pending=two_phase,
            timeout_s=timeout,
        )
        result = self._send(request)
        if amount > m.balance - m.pending_out:
            assert result == "exceeds_available"
            return
        assert result == "ok"
        drawn = m.draw(amount)
        if two_phase:
            m.pending_out += amount
            for lot_id, n in drawn:
                m.lots[lot_id].reserved += n
            self.pending[rid] = (member, amount, drawn, self.clock + timeout if timeout else None)
        else:
            m.balance -= amount
            for lot_id, n in drawn:
                m.lots[lot_id].remaining -= n

    @precondition(lambda self: self.pending)
    @rule(data=st.data(), confirm=st.booleans())
    def resolve(self, data, confirm):
        pid = data.draw(st.sampled_from(sorted(self.pending)))
        member, amount, drawn, timeout_at = self.pending[pid]
        result = self._send(
            Request(self._id(), "post" if confirm else "void", pending_id=pid, at=self.clock)
        )
        expired = timeout_at is not None and timeout_at <= self.clock
        if confirm and expired:
            assert result == "pending_transfer_expired"
            return
        assert result == "ok"
        del self.pending[pid]
        m = self.members[member]
        m.pending_out -= amount
        for lot_id, n in drawn:
            m.lots[lot_id].reserved -= n
            if confirm:
                m.lots[lot_id].remaining -= n
            elif m.unbacked:  # freed points repay what was debited beyond the lots
                repay = min(n, m.unbacked)
                m.lots[lot_id].remaining -= repay
                m.unbacked -= repay
        if confirm:
            m.balance -= amount

    @precondition(lambda self: any(m.lots for m in self.members.values()))
    @rule(data=st.data())
    def expire(self, data):
        choices = sorted(
            (lot.id, member) for member, m in self.members.items() for lot in m.lots.values()
        )
        lot_id, member = data.draw(st.sampled_from(choices))
        lot = self.members[member].lots[lot_id]
        free = lot.remaining - lot.reserved
        if free <= 0:
            return
        result = self._send(
            Request(self._id(), "expire", member, BREAKAGE, free, at=self.clock, lot_id=lot_id)
        )
        assert result == "ok"
        lot.remaining -= free
        self.members[member].balance -= free

    @precondition(lambda self: self.accruals)
    @rule(data=st.data(), allow_negative=st.booleans())
    def clawback(self, data, allow_negative):
        accrual_id, member, amount = data.draw(st.sampled_from(self.accruals))
        m = self.members[member]
        rid = self._id()
        result = self._send(
            Request(
                rid,
                "clawback",
                member,
                FUNDER,
                amount,
                at=self.clock,
                allow_negative=allow_negative,
                ref=accrual_id,
            )
        )
        available = m.balance - m.pending_out
        if amount > available and not allow_negative:
            assert result == "exceeds_available"
            return
        assert result == "ok"
        drawn = m.draw(amount)
        for lot_id, n in drawn:
            m.lots[lot_id].remaining -= n
        m.unbacked += amount - sum(n for _, n in drawn)
        m.balance -= amount

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), change=st.booleans())
    def replay(self, data, change):
        earlier = data.draw(st.sampled_from(self.sent))
        before = self.book
        if change:
            altered = Request(**{**earlier.__dict__, "ref": earlier.ref + "-changed"})
            self.book, (result,) = post(self.book, [altered], self.clock)
            assert result == "exists_with_different_payload"
        else:
            self.book, (result,) = post(self.book, [earlier], self.clock)
            assert result == "exists"
        assert self.book == before

    @rule(days=st.integers(0, 4))
    def time_passes(self, days):
        self.clock += days * DAY

    @invariant()
    def sound_and_equal_to_the_model(self):
        assert verify(self.book) is None, verify(self.book)
        for member, m in self.members.items():
            a = self.book.account(member)
            assert (a.balance, a.available, a.unbacked) == (
                m.balance,
                m.balance - m.pending_out,
                m.unbacked,
            )
            lots = {
                lot_id: (lot.remaining, lot.reserved)
                for lot_id, lot in self.book.lots.items()
                if lot.account == member
            }
            assert lots == {lot_id: (lot.remaining, lot.reserved) for lot_id, lot in m.lots.items()}
        # Double entry: every point credited somewhere was debited somewhere else.
        assert sum(a.balance for a in self.book.accounts.values()) == 0


TestLedgerVersusModel = LedgerVersusModel.TestCase
TestLedgerVersusModel.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_linked_requests_succeed_or_fail_together():
    ann = MEMBERS[0]
    book, results = post(Book(), [Request("a1", "accrue", FUNDER, ann, 100)], 0.0)
    book2, results = post(
        book,
        [
            Request("r1", "redeem", ann, REDEEMED, 60, linked=True),
            Request("r2", "redeem", ann, REDEEMED, 60),
        ],
        0.0,
    )
    assert results == ["linked_event_failed", "exceeds_available"]
    assert book2 == book


def test_expiry_dates_follow_the_programme_rule():
    import datetime as dt

    from tenure.loyalty.ledger import expiry_at

    earned = dt.datetime(2026, 2, 14, 15, 0, tzinfo=dt.UTC).timestamp()
    assert expiry_at(earned, "never") is None
    assert expiry_at(earned, "days", days=30) == earned + 30 * DAY
    assert expiry_at(earned, "end_of_month") == dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()
    assert expiry_at(earned, "end_of_year") == dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()
    december = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC).timestamp()
    assert expiry_at(december, "end_of_month") == dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp()


def test_expiry_run_posts_lapsed_free_points_to_breakage_once():
    from tenure.loyalty.ledger import expiries_due

    ann = MEMBERS[0]
    book, _ = post(
        Book(),
        [
            Request("old", "accrue", FUNDER, ann, 100, at=0.0, expires_at=10 * DAY),
            Request("new", "accrue", FUNDER, ann, 50, at=0.0, expires_at=90 * DAY),
            Request("hold", "redeem", ann, REDEEMED, 30, at=1.0, pending=True),  # holds 30 of old
        ],
        1.0,
    )
    due = expiries_due(book, 20 * DAY, {ann: BREAKAGE})
    assert [(r.lot_id, r.amount) for r in due] == [("old", 70)]
    book, results = post(book, due, 20 * DAY)
    assert results == ["ok"] and book.account(BREAKAGE).balance == 70
    # Run again: nothing new is due, and replaying the same requests changes nothing.
    assert expiries_due(book, 20 * DAY, {ann: BREAKAGE}) == []
    again, results = post(book, due, 20 * DAY)
    assert results == ["exists"] and again == book
    assert verify(book) is None and book.account(ann).balance == 80


def test_review_cases_of_the_ledger_rules():
    """Cases a review found, each once: they stay fixed."""
    import dataclasses

    ann = MEMBERS[0]
    # A lot partly expired under a hold expires the rest once the hold is voided.
    book, _ = post(
        Book(),
        [
            Request("a", "accrue", FUNDER, ann, 100, at=0.0, expires_at=10 * DAY),
            Request("h", "redeem", ann, REDEEMED, 30, at=1.0, pending=True),
        ],
        1.0,
    )
    from tenure.loyalty.ledger import expiries_due

    book, res = post(book, expiries_due(book, 20 * DAY, {ann: BREAKAGE}), 20 * DAY)
    assert res == ["ok"] and book.account(ann).balance == 30
    book, _ = post(book, [Request("v", "void", pending_id="h", at=21 * DAY)], 21 * DAY)
    book, res = post(book, expiries_due(book, 22 * DAY, {ann: BREAKAGE}), 22 * DAY)
    assert res == ["ok"] and book.account(ann).balance == 0 and verify(book) is None

    # A void frees points that repay what an allowed negative clawback left unbacked.
    book, _ = post(
        Book(),
        [
            Request("a", "accrue", FUNDER, ann, 100, at=0.0, expires_at=10 * DAY),
            Request("h", "redeem", ann, REDEEMED, 80, at=1.0, pending=True),
            Request("c", "clawback", ann, FUNDER, 100, at=2.0, allow_negative=True),
            Request("v", "void", pending_id="h", at=3.0),
        ],
        3.0,
    )
    assert (book.account(ann).balance, book.account(ann).unbacked) == (0, 0)
    assert expiries_due(book, 20 * DAY, {ann: BREAKAGE}) == [] and verify(book) is None

    # A confirmation made in time is not refused because the batch holds later events.
    book, _ = post(
        Book(),
        [
            Request("a", "accrue", FUNDER, ann, 100),
            Request("h", "redeem", ann, REDEEMED, 50, at=0.0, pending=True, timeout_s=7 * DAY),
        ],
        0.0,
    )
    _, res = post(book, [Request("p", "post", pending_id="h", at=6 * DAY)], now=9 * DAY)
    assert res == ["ok"]

    # A pending accrual keeps its expiry when it is posted.
    book, _ = post(
        Book(),
        [
            Request("pa", "accrue", FUNDER, ann, 40, at=0.0, pending=True, expires_at=5 * DAY),
            Request("pp", "post", pending_id="pa", at=1.0),
        ],
        1.0,
    )
    assert book.lots["pa"].expires_at == 5 * DAY

    # verify: a stray reservation, or a post of a voided hold, is a breach.
    book, _ = post(
        Book(),
        [
            Request("a", "accrue", FUNDER, ann, 100),
            Request("h", "redeem", ann, REDEEMED, 10, pending=True),
            Request("v", "void", pending_id="h"),
        ],
        0.0,
    )
    stray = Book(
        book.accounts, {"a": dataclasses.replace(book.lots["a"], reserved=5)}, book.transfers
    )
    assert "reserved but pending transfers hold 0" in verify(stray)
    lying = {**book.transfers, "v": dataclasses.replace(book.transfers["v"], kind="post")}
    assert "which is not posted" in verify(Book(book.accounts, book.lots, lying))

    # A batch that ends inside a linked chain applies none of it.
    book2, res = post(book, [Request("x", "redeem", ann, REDEEMED, 1, linked=True)], 0.0)
    assert res == ["linked_event_chain_open"] and book2 == book
