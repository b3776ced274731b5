"""Partners: reconcile a partner's statement against the ledger, and settle what each owes.

A statement is a CSV with a header: `reference` (the event id the points came from) and `points`
(the points the partner believes it funded), other columns kept as they are. Reconciliation
matches lines by reference and reports, each sorted by reference: lines the ledger does not
have, ledger postings the statement lacks, and lines whose points differ. Settlement per partner
and period: funded points x the contract's point value.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tenure.errors import InputError


@dataclass(frozen=True)
class StatementLine:
    """One line of a partner's statement."""

    reference: str
    points: int
    line_no: int


@dataclass(frozen=True)
class Mismatch:
    """A reference both sides know with different points."""

    reference: str
    statement_points: int
    ledger_points: int


@dataclass(frozen=True)
class Reconciliation:
    """What differs between a statement and the ledger."""

    partner: str
    period: str
    matched: int
    missing_in_ledger: list[StatementLine] = field(default_factory=list)
    missing_in_statement: list[tuple[str, int]] = field(default_factory=list)
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing to dispute."""
        return not (self.missing_in_ledger or self.missing_in_statement or self.mismatches)


def parse_statement(text: str, source: str = "statement") -> list[StatementLine]:
    """Statement lines from CSV text; a bad line is an error naming the line and the field."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"reference", "points"} - set(reader.fieldnames or ())
    if missing:
        raise InputError(f"{source}: the header needs columns {sorted(missing)}")
    lines, seen = [], set()
    for n, row in enumerate(reader, start=2):
        ref = (row.get("reference") or "").strip()
        if not ref:
            raise InputError(f"{source}:{n}: reference is empty")
        if ref in seen:
            raise InputError(f"{source}:{n}: reference {ref!r} appears twice")
        try:
            points = int((row.get("points") or "").strip())
        except ValueError:
            raise InputError(
                f"{source}:{n}: points {row.get('points')!r} is not a whole number"
            ) from None
        seen.add(ref)
        lines.append(StatementLine(ref, points, n))
    return lines


def reconcile(
    partner: str, period: str, statement: Iterable[StatementLine], ledger: Mapping[str, int]
) -> Reconciliation:
    """Match statement lines to the ledger's funded points per reference."""
    by_ref = {line.reference: line for line in statement}
    missing_in_ledger = sorted(
        (line for ref, line in by_ref.items() if ref not in ledger), key=lambda x: x.reference
    )
    missing_in_statement = sorted((ref, pts) for ref, pts in ledger.items() if ref not in by_ref)
    mismatches = sorted(
        (
            Mismatch(ref, line.points, ledger[ref])
            for ref, line in by_ref.items()
            if ref in ledger and ledger[ref] != line.points
        ),
        key=lambda m: m.reference,
    )
    matched = sum(1 for ref, line in by_ref.items() if ledger.get(ref) == line.points)
    return Reconciliation(
        partner, period, matched, missing_in_ledger, missing_in_statement, mismatches
    )
