"""OEM contracts: who funds the points an event earns, at which rate, up to which caps.

A contract has effective-dated versions (an amendment is a new version from a date); the version
in force at the *event's* time applies, however late the event arrives. A version's earn rules
are conditions in the zen-engine expression language over the event (`event.type`,
`event.partner_id`, `event.payload.*`); the first rule that holds gives points per unit of the
amount and a funding split between the OEM and the dealer where the event happened. Caps bound the
points per contract and per customer in a period (month or year, in UTC); what a cap refuses is
recorded with the cap that refused it.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenure.documents import read_yaml
from tenure.errors import ConfigError, field_errors
from tenure.expressions import holds, parsed

DEALER = "dealer"  # in a funding split: whichever dealer the event names as its partner


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EarnRule(_Model):
    """Points for matching events: `points_per_unit` x amount, funded by shares summing to 1."""

    id: str = Field(min_length=1)
    when: str = Field(description="zen expression over `event`, e.g. event.payload.line == 'parts'")
    points_per_unit: float = Field(gt=0)
    funding: dict[str, float] = Field(
        min_length=1, description="funder -> share; 'dealer' = the event's partner"
    )

    _parses = field_validator("when")(lambda cls, value: parsed(value))

    @field_validator("funding")
    @classmethod
    def _sums_to_one(cls, value: dict[str, float]) -> dict[str, float]:
        if any(v <= 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-9:
            raise ValueError(f"funding shares must be positive and sum to 1, got {value}")
        return value


class Cap(_Model):
    """At most `points` per period."""

    points: int = Field(ge=0)
    period: Literal["month", "year"] = "month"

    def key(self, at: dt.datetime) -> str:
        """The period `at` falls in."""
        return f"{at:%Y-%m}" if self.period == "month" else f"{at:%Y}"


class CatalogueItem(_Model):
    """Something a member can redeem points for."""

    id: str = Field(min_length=1)
    points: int = Field(gt=0)


class Version(_Model):
    """The terms in force from `effective_from` until the next version."""

    effective_from: dt.datetime
    earn: list[EarnRule] = Field(default_factory=list)
    contract_cap: Cap | None = None
    customer_cap: Cap | None = None
    catalogue: list[CatalogueItem] = Field(default_factory=list)
    sharing: dict[str, list[str]] = Field(
        default_factory=dict, description="partner -> the customer fields it may see"
    )
    returns: Literal["within_balance", "allow_negative", "pending_only"] = Field(
        default="within_balance",
        description="A return claws back its purchase's points: as far as the balance allows, "
        "all of them (the balance may go negative), or only those still unspent in their lot.",
    )

    @field_validator("effective_from")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("effective_from needs a time zone (e.g. 2026-03-15T00:00:00Z)")
        return value.astimezone(dt.UTC)


class Contract(_Model):
    """A multi-year loyalty contract between an OEM and its dealers."""

    id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    programme: str = "default"
    oem: str = Field(min_length=1)
    dealers: list[str] = Field(min_length=1)
    point_value: float = Field(default=0.01, gt=0, description="Currency owed per funded point.")
    versions: list[Version] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        starts = [v.effective_from for v in self.versions]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ValueError("versions must be in order of effective_from, each from its own date")
        funders = {self.oem, DEALER, *self.dealers}
        for v in self.versions:
            for rule in v.earn:
                unknown = sorted(set(rule.funding) - funders)
                if unknown:
                    raise ValueError(
                        f"earn rule {rule.id!r}: funders {unknown} are not parties "
                        f"(the OEM {self.oem!r}, 'dealer', or a named dealer)"
                    )
        return self

    def version_at(self, at: dt.datetime) -> Version | None:
        """The version in force at `at` (None before the first)."""
        current = None
        for v in self.versions:
            if v.effective_from <= at:
                current = v
        return current

    def covers(self, partner_id: str | None) -> bool:
        """Whether events at this partner accrue under this contract."""
        return partner_id is not None and (partner_id == self.oem or partner_id in self.dealers)


def parse_contract(data: Any, source: str = "contract") -> Contract:
    """Validate a loaded document as a contract; errors name the field."""
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid contract: {field_errors(exc)}") from None


def load_contract(path: Path) -> Contract:
    """Read and validate a contract file."""
    return parse_contract(read_yaml(path, "contract"), str(path))


class Accrual(_Model):
    """What an event earns under a contract, before caps: points and who funds how many."""

    contract_id: str
    version_from: dt.datetime
    rule_id: str
    points: int
    shares: dict[str, int]  # funder (a party id) -> points


def earn(contract: Contract, event: dict[str, Any]) -> Accrual | None:
    """The accrual an event earns (None when no version is in force or no rule holds).

    `event` is the envelope as a mapping: type, customer_id, occurred_at (aware), partner_id,
    payload (with `amount`). Points are floored; a split's rounding remainder goes to the OEM.
    """
    if not contract.covers(event.get("partner_id")):
        return None
    version = contract.version_at(event["occurred_at"])
    if version is None:
        return None
    context = {"event": {**event, "occurred_at": event["occurred_at"].isoformat()}}
    for rule in version.earn:
        ok, _ = holds(rule.when, context)
        if not ok:
            continue
        amount = float((event.get("payload") or {}).get("amount") or 0.0)
        points = math.floor(amount * rule.points_per_unit + 1e-9)
        if points <= 0:
            return None
        shares: dict[str, int] = {}
        for funder, share in rule.funding.items():
            who = event["partner_id"] if funder == DEALER else funder
            shares[who] = shares.get(who, 0) + math.floor(points * share + 1e-9)
        shares[contract.oem] = shares.get(contract.oem, 0) + points - sum(shares.values())
        return Accrual(
            contract_id=contract.id,
            version_from=version.effective_from,
            rule_id=rule.id,
            points=points,
            shares={k: v for k, v in shares.items() if v > 0},
        )
    return None


def capped(
    accrual: Accrual,
    version: Version,
    at: dt.datetime,
    used_contract: int,
    used_customer: int,
) -> tuple[int, str | None]:
    """(points granted, why the rest was refused) given what the periods have used so far."""
    granted, reason = accrual.points, None
    for cap, used, name in (
        (version.contract_cap, used_contract, "contract"),
        (version.customer_cap, used_customer, "customer"),
    ):
        if cap is None:
            continue
        room = max(0, cap.points - used)
        if granted > room:
            granted = room
            reason = (
                f"{name} cap {cap.points} per {cap.period} ({cap.key(at)}): {used} already "
                f"accrued, {accrual.points - granted} of {accrual.points} refused"
            )
    return granted, reason


def split(shares: dict[str, int], total: int, granted: int, oem: str) -> dict[str, int]:
    """Scale a funding split down to the granted points (floored; the remainder to the OEM)."""
    if granted >= total:
        return dict(shares)
    out = {k: math.floor(v * granted / total) for k, v in shares.items()} if total else {}
    out[oem] = out.get(oem, 0) + granted - sum(out.values())
    return {k: v for k, v in out.items() if v > 0}
