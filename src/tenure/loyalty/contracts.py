"""Contracts: who funds the points an event earns, at which rate, up to which caps, until when.

A contract has effective-dated versions (an amendment is a new version from a date); the version
in force at the *event's* time applies, however late the event arrives. A version's earn rules
are conditions in the zen-engine expression language over the event (`event.type`,
`event.partner_id`, `event.payload.*`); the first rule that holds for the event's type gives
points per unit of the amount (or a flat number per event) and a funding split between the OEM
and the dealer where the event happened. Caps bound the points per contract and per customer in a
period (month or year, in UTC); what a cap refuses is recorded with the cap that refused it. The
version's expiry rule dates the lot the points make.

Two kinds, one machinery: an OEM contract (`<workspace>/contracts/*.yaml`) covers the events at
its OEM and dealers; an own-brand programme (`<workspace>/programmes/*.yaml`, a `Programme`)
covers the events with no partner (or naming the brand), every point funded by the brand itself.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenure.documents import read_yaml
from tenure.errors import ConfigError, field_errors
from tenure.expressions import holds, parsed
from tenure.loyalty.ledger import ExpiryRule, expiry_at

DEALER = "dealer"  # in a funding split: whichever dealer the event names as its partner
EARNING_TYPES = ("purchase", "service")  # what a rule earns on unless it names its types
# Events that move points themselves (or ids): earning on them would feed the ledger its own tail.
NEVER_EARN = frozenset(
    {
        "loyalty.redeem",
        "loyalty.redeem_confirmed",
        "loyalty.redeem_cancelled",
        "loyalty.return",
        "alias",
        "merge",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EarnRule(_Model):
    """Points for matching events of the `types` named: `points_per_unit` x the amount spent (in
    the reporting currency), or a flat `points` per event; funded by shares summing to 1."""

    id: str = Field(min_length=1)
    types: list[str] = Field(
        default=list(EARNING_TYPES),
        min_length=1,
        description="the event types the rule earns on (purchase and service unless named)",
    )
    when: str = Field(
        default="true",
        description="zen expression over `event`, e.g. event.payload.line == 'parts'",
    )
    points_per_unit: float | None = Field(default=None, gt=0, description="per currency unit")
    points: int | None = Field(default=None, gt=0, description="flat, per matching event")
    funding: dict[str, float] | None = Field(
        default=None,
        min_length=1,
        description="funder -> share; 'dealer' = the event's partner; none: the OEM or brand",
    )

    _parses = field_validator("when")(lambda cls, value: parsed(value))

    @field_validator("types")
    @classmethod
    def _earning_types(cls, value: list[str]) -> list[str]:
        bad = sorted({t for t in value if t in NEVER_EARN or not t.strip()})
        if bad:
            raise ValueError(f"cannot earn on {bad}: they move points or ids themselves")
        return value

    @field_validator("funding")
    @classmethod
    def _sums_to_one(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if any(v <= 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-9:
            raise ValueError(f"funding shares must be positive and sum to 1, got {value}")
        return value

    @model_validator(mode="after")
    def _one_rate(self) -> EarnRule:
        if (self.points_per_unit is None) == (self.points is None):
            raise ValueError(
                f"earn rule {self.id!r}: give points_per_unit (per currency unit spent) or "
                "points (per event), exactly one"
            )
        return self

    def earned(self, event: dict[str, Any]) -> int:
        """Points this rule gives the event (floored)."""
        if self.points is not None:
            return self.points
        amount = float((event.get("payload") or {}).get("amount") or 0.0)
        return math.floor(amount * (self.points_per_unit or 0.0) + 1e-9)


class Cap(_Model):
    """At most `points` per period."""

    points: int = Field(ge=0)
    period: Literal["month", "year"] = "month"

    def key(self, at: dt.datetime) -> str:
        """The period `at` falls in."""
        return f"{at:%Y-%m}" if self.period == "month" else f"{at:%Y}"


class Expiry(_Model):
    """When earned points lapse: never, N days after earning, or at the end of the month or
    year they were earned in (in `timezone`)."""

    rule: ExpiryRule = "never"
    days: int = Field(default=365, ge=1, le=36_500)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in zoneinfo.available_timezones():
            raise ValueError(f"unknown IANA time zone {value!r}")
        return value

    def at(self, earned_at: float) -> float | None:
        """When points earned at `earned_at` (epoch seconds) expire (None: never)."""
        return expiry_at(earned_at, self.rule, self.days, self.timezone)


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
    expiry: Expiry = Field(
        default_factory=Expiry, description="When the points earned under this version lapse."
    )

    @field_validator("effective_from")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None:
            raise ValueError("effective_from needs a time zone (e.g. 2026-03-15T00:00:00Z)")
        return value.astimezone(dt.UTC)


ContractId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _in_order(versions: list[Version]) -> None:
    starts = [v.effective_from for v in versions]
    if starts != sorted(starts) or len(set(starts)) != len(starts):
        raise ValueError("versions must be in order of effective_from, each from its own date")


class Contract(_Model):
    """A multi-year loyalty contract between an OEM and its dealers, or (`own_brand`) a brand's
    own programme: no dealers, every point funded by the brand (`oem`)."""

    id: ContractId
    programme: str = "default"
    oem: str = Field(min_length=1)
    dealers: list[str] = Field(default_factory=list)
    point_value: float = Field(default=0.01, gt=0, description="Currency owed per funded point.")
    versions: list[Version] = Field(min_length=1)
    own_brand: bool = Field(
        default=False, description="Covers events with no partner (or naming the brand)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        _in_order(self.versions)
        if not self.own_brand and not self.dealers:
            raise ValueError(
                "dealers: a contract needs at least one dealer (a programme of the brand's own "
                "goes in programmes/, with a `brand`)"
            )
        funders = {self.oem, *self.dealers} | (set() if self.own_brand else {DEALER})
        parties = (
            f"the brand {self.oem!r}"
            if self.own_brand
            else (f"the OEM {self.oem!r}, 'dealer', or a named dealer")
        )
        for v in self.versions:
            for rule in v.earn:
                unknown = sorted(set(rule.funding or ()) - funders)
                if unknown:
                    raise ValueError(
                        f"earn rule {rule.id!r}: funders {unknown} are not parties ({parties})"
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
        """Whether events at this partner (None: no partner) accrue under this contract."""
        if partner_id is None:
            return self.own_brand
        return partner_id == self.oem or partner_id in self.dealers

    def earning_types(self) -> frozenset[str]:
        """The event types some version's rules earn on."""
        return frozenset(t for v in self.versions for rule in v.earn for t in rule.types)


class Programme(_Model):
    """An own-brand programme (`<workspace>/programmes/*.yaml`): the brand funds every point;
    events with no partner, or naming the brand as theirs, earn under its versions' rules, caps,
    expiry and return policy, exactly as under a contract."""

    id: ContractId
    programme: str = "default"
    brand: str = Field(min_length=1, description="Who funds the points (its funder account).")
    point_value: float = Field(default=0.01, gt=0, description="What a point costs the brand.")
    versions: list[Version] = Field(min_length=1)

    def contract(self) -> Contract:
        """The programme as the contract the accrual machinery runs."""
        return Contract(
            id=self.id,
            programme=self.programme,
            oem=self.brand,
            point_value=self.point_value,
            versions=self.versions,
            own_brand=True,
        )


def parse_contract(data: Any, source: str = "contract") -> Contract:
    """Validate a loaded document as a contract; errors name the field."""
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid contract: {field_errors(exc)}") from None


def load_contract(path: Path) -> Contract:
    """Read and validate a contract file."""
    return parse_contract(read_yaml(path, "contract"), str(path))


def parse_programme(data: Any, source: str = "programme") -> Contract:
    """Validate a loaded document as an own-brand programme; errors name the field."""
    try:
        return Programme.model_validate(data).contract()
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid programme: {field_errors(exc)}") from None


def load_programme(path: Path) -> Contract:
    """Read and validate an own-brand programme file."""
    return parse_programme(read_yaml(path, "programme"), str(path))


def load_terms(path: Path) -> Contract:
    """A contract or an own-brand programme file (a programme names its `brand`)."""
    data = read_yaml(path, "contract")
    if isinstance(data, dict) and "brand" in data:
        return parse_programme(data, str(path))
    return parse_contract(data, str(path))


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
    payload (with `amount` for a rule per unit spent). Points are floored; a split's rounding
    remainder goes to the OEM (or brand).
    """
    if not contract.covers(event.get("partner_id")):
        return None
    version = contract.version_at(event["occurred_at"])
    if version is None:
        return None
    context = {"event": {**event, "occurred_at": event["occurred_at"].isoformat()}}
    for rule in version.earn:
        if event.get("type") not in rule.types:
            continue
        ok, _ = holds(rule.when, context)
        if not ok:
            continue
        points = rule.earned(event)
        if points <= 0:
            return None
        shares: dict[str, int] = {}
        for funder, share in (rule.funding or {contract.oem: 1.0}).items():
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
