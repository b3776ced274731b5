"""The v1 event envelope and its typed payloads.

Every event is one envelope; `type` selects the payload. The set of types is closed: an unknown
type is rejected with a reason unless the workspace registers it (its payload is then kept as free
JSON). The same structs validate input, type the code and export the JSON Schema.

Events are msgspec structs rather than pydantic models: this is the ingest hot path, and msgspec
decodes and validates a line about four times faster with a fraction of the allocations (measured
with `benchmarks/ingest.py`). Configuration files, read once, use pydantic.
"""

from __future__ import annotations

import datetime as dt
import functools
import unicodedata
import zoneinfo
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import Meta, Struct

SCHEMA_VERSION = 1
MIN_YEAR, MAX_YEAR = 1970, 2200
EPOCH = dt.datetime(MIN_YEAR, 1, 1, tzinfo=dt.UTC)
MAX_PAYLOAD_BYTES = 64 * 1024
# How deep a line may nest objects and arrays (the envelope is 1, a typed payload 2). Deeper input
# is hostile: a decoder recurses once per level. See events/parse.py for where it is measured.
MAX_DEPTH = 64
# How far ahead an event may be: of the run's newest event and of the clock (live runs and the
# API: of the clock); `ingest: {max_future_skew: 1d}` in tenure.yaml. See `parse.Horizon`.
DEFAULT_MAX_FUTURE_SKEW = dt.timedelta(days=1)
MAX_ID_CHARS = 200

Id = Annotated[str, Meta(min_length=1, max_length=200)]
Name = Annotated[str, Meta(min_length=1, max_length=100)]
Text = Annotated[str, Meta(max_length=500)]
# Upper bounds keep every amount representable in the state's integer millionths (int64) and
# refuse infinities, which JSON cannot carry but CSV text ("inf") can.
Money = Annotated[float, Meta(ge=0, le=1e12)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
AwareTime = Annotated[dt.datetime, Meta(tz=True)]


# Characters an id may not hold (Unicode categories): they hide or rewrite what a terminal shows
# (controls, ESC sequences, bidi overrides, zero-width joiners) or split a line.
_HIDDEN = {
    "Cc": "a control character",
    "Cf": "a format character (bidi control or zero-width)",
    "Cs": "a surrogate",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def id_problem(value: str) -> str | None:
    """Why `value` cannot be an id (event, customer, partner, source, type name), or None."""
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters; at most {MAX_ID_CHARS}"
    if value.isprintable():  # the usual case, in C; what it refuses is sorted out below
        return None
    for i, ch in enumerate(value):
        if (what := _HIDDEN.get(unicodedata.category(ch))) is not None:
            return f"holds {what} (U+{ord(ch):04X}) at position {i}; ids must be printable"
    return None


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Payload(Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Base of every typed payload: immutable, unknown fields refused."""


class Usage(Payload, frozen=True):
    sessions: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    minutes: Annotated[float, Meta(ge=0, le=1e7)] = 0.0
    feature: Name | None = None


# The rate to the workspace's reporting currency in force at the event's time, as the parser
# found it in the rates file (events/money.py): stored with the event, so the log converts the
# same way on every replay. Not the producer's to send; the parser sets (or clears) it.
Rate = Annotated[float, Meta(gt=0, le=1e9)]


def _rate() -> Any:
    return msgspec.field(default=None, name="__rate__")


class Purchase(Payload, frozen=True):
    amount: Money
    currency: Currency | None = None  # None: the workspace's reporting currency
    order_id: Id | None = None
    items: Annotated[int, Meta(ge=0, le=1_000_000)] = 1
    product_line: Name | None = None  # what a contract's earn rules may look at
    rate: Rate | None = _rate()


class Service(Payload, frozen=True):
    """A workshop visit or service at a dealer."""

    amount: Money
    currency: Currency | None = None
    order_id: Id | None = None
    product_line: Name | None = None
    rate: Rate | None = _rate()


Points = Annotated[int, Meta(gt=0, le=1_000_000_000)]


class LoyaltyRedeem(Payload, frozen=True):
    """A member asks to redeem points (held until confirmed or cancelled)."""

    redemption_id: Id
    points: Points
    programme: Name = "default"
    item: Name | None = None


class LoyaltyRedemption(Payload, frozen=True):
    """A redemption confirmed or cancelled."""

    redemption_id: Id
    programme: Name = "default"


class LoyaltyReturn(Payload, frozen=True):
    """Goods returned: the points their purchase earned are clawed back, in proportion when only
    part of it comes back (`amount`, in the purchase's own currency, or a number of `items`)."""

    purchase_event_id: Id
    programme: Name = "default"
    amount: Money | None = None
    items: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None

    def __post_init__(self) -> None:
        if self.amount is not None and self.items is not None:
            raise ValueError("a return names the amount or the items it brings back, not both")


class Subscription(Payload, frozen=True):
    plan: Name | None = None
    mrr: Money | None = None
    reason: Text | None = None
    currency: Currency | None = None  # of `mrr`
    rate: Rate | None = _rate()


class PaymentFailed(Payload, frozen=True):
    amount: Money | None = None
    reason: Text | None = None
    attempt: Annotated[int, Meta(ge=1, le=1000)] = 1
    currency: Currency | None = None
    rate: Rate | None = _rate()


class SupportTicket(Payload, frozen=True):
    ticket_id: Id
    sentiment: Annotated[float, Meta(ge=-1.0, le=1.0)]
    status: Literal["open", "closed"] = "open"
    topic: Name | None = None


class ChannelOutcome(Payload, frozen=True):
    channel: Name
    message_id: Id | None = None
    decision_id: Id | None = None
    campaign: Name | None = None


class Consent(Payload, frozen=True):
    channel: Name
    purpose: Name
    partner_id: Id | None = None


class Alias(Payload, frozen=True):
    """`previous_id` is the same person as the event's customer: an anonymous id that signed in,
    or a second account. From this event on, everything of `previous_id` is the customer's."""

    previous_id: Id


# Personal data. It is accepted only here, kept in clear only in the `personal_data` table (the
# event log stores digests; see events/personal.py) and erased with `tenure customers erase`.
PersonName = Annotated[str, Meta(min_length=1, max_length=200)]
# The event log keeps a digest in place of each value ("sha256:<hex>"), which must decode too.
_DIGEST = r"sha256:[0-9a-f]{64}"
Email = Annotated[
    str, Meta(pattern=rf"^({_DIGEST}|[^@\s]{{1,64}}@[^@\s]+\.[^@\s]+)$", max_length=254)
]
Phone = Annotated[str, Meta(pattern=rf"^({_DIGEST}|\+?[0-9][0-9 ().-]{{4,30}})$")]


class ProfileUpdated(Payload, frozen=True):
    timezone: Name | None = None
    plan: Name | None = None
    segment: Name | None = None
    name: PersonName | None = None
    email: Email | None = None
    phone: Phone | None = None

    def __post_init__(self) -> None:
        if self.timezone is not None and self.timezone not in _zones():
            raise ValueError(f"timezone: unknown IANA time zone {self.timezone!r}")


# The types whose amounts are money: the parser records their rate to the reporting currency.
MONEY_TYPES = frozenset(
    {"purchase", "service", "payment.failed"}
    | {f"subscription.{s}" for s in ("started", "renewed", "cancel_requested", "cancelled")}
)

PAYLOADS: dict[str, type[Payload]] = {
    "usage": Usage,
    "purchase": Purchase,
    "service": Service,
    "subscription.started": Subscription,
    "subscription.renewed": Subscription,
    "subscription.cancel_requested": Subscription,
    "subscription.cancelled": Subscription,
    "payment.failed": PaymentFailed,
    "support.ticket": SupportTicket,
    "channel.delivered": ChannelOutcome,
    "channel.opened": ChannelOutcome,
    "channel.clicked": ChannelOutcome,
    "channel.redeemed": ChannelOutcome,
    "channel.unsubscribed": ChannelOutcome,
    "consent.granted": Consent,
    "consent.revoked": Consent,
    "profile.updated": ProfileUpdated,
    "loyalty.redeem": LoyaltyRedeem,
    "loyalty.redeem_confirmed": LoyaltyRedemption,
    "loyalty.redeem_cancelled": LoyaltyRedemption,
    "loyalty.return": LoyaltyReturn,
    "alias": Alias,
    "merge": Alias,
}
# Types that join two customer ids into one (the pipeline resolves ids through them).
IDENTITY_TYPES = frozenset({"alias", "merge"})
EVENT_TYPES: tuple[str, ...] = tuple(PAYLOADS)
# The envelope's fields in their canonical order (also the event log's columns).
ENVELOPE_FIELDS = (
    "event_id",
    "type",
    "customer_id",
    "occurred_at",
    "source",
    "partner_id",
    "schema_version",
    "payload",
)


class Event(
    Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, gc=False, tag_field="type"
):
    """The canonical envelope, v1. One subclass per type fixes the tag and the payload's type."""

    event_id: Id
    customer_id: Id
    occurred_at: AwareTime
    source: Name | None = None
    partner_id: Id | None = None
    schema_version: Literal[1] = 1
    payload: Any = None
    # What a producer sends beyond the schema is kept, not refused (additive evolution; see
    # `split_payload` and the README's compatibility rule): a top-level `context` object (as
    # Segment and others send) and the payload's own extra fields.
    context: dict[str, Any] | None = None
    extra: dict[str, Any] | None = msgspec.field(default=None, name="__extra__")

    def __post_init__(self) -> None:
        # Times far outside any customer history are typos, and years 1 or 9999 with an offset
        # cannot even be converted to UTC. Only the edge years need a closer look.
        if not MIN_YEAR < self.occurred_at.year < MAX_YEAR:
            _check_time(self.occurred_at)

    @property
    def type(self) -> str:
        """The event type (the struct's tag)."""
        return self.__struct_config__.tag  # type: ignore[return-value]


ID_FIELDS = ("event_id", "customer_id", "partner_id", "source")
# The ids inside each typed payload (order_id, redemption_id, ticket_id, ...): every `*_id` field.
PAYLOAD_ID_FIELDS: dict[str, tuple[str, ...]] = {
    event_type: tuple(f.name for f in msgspec.structs.fields(p) if f.name.endswith("_id"))
    for event_type, p in PAYLOADS.items()
}


def ids_problem(event: Event) -> tuple[str, str] | None:
    """(field, reason) when an id of `event`, in the envelope or its typed payload, cannot be one
    (see `id_problem`), else None. A payload's id is named `payload.<field>`.

    Checked where input comes in (the parsers), not when the event log is read back: what was
    stored stays readable.
    """
    for name in ID_FIELDS:
        value = getattr(event, name)
        if value is not None and (problem := id_problem(value)) is not None:
            return name, f"{name}: {problem}"
    for name in PAYLOAD_ID_FIELDS.get(event.type, ()):
        value = getattr(event.payload, name, None)
        if isinstance(value, str) and (problem := id_problem(value)) is not None:
            return f"payload.{name}", f"payload.{name}: {problem}"
    return None


def _check_time(t: dt.datetime) -> None:
    """Refuse a time before 1970-01-01T00:00Z or after the year MAX_YEAR."""
    year = t.year
    if year < MIN_YEAR or year > MAX_YEAR:
        raise ValueError(f"occurred_at: year {year} is outside {MIN_YEAR}-{MAX_YEAR}")
    if year == MIN_YEAR and t < EPOCH:  # an offset can take 1970-01-01 local back into 1969
        raise ValueError(
            f"occurred_at: {t.isoformat()} is before 1970-01-01T00:00:00Z "
            f"(outside {MIN_YEAR}-{MAX_YEAR})"
        )


@functools.cache
def _payload_fields(event_type: str) -> frozenset[str]:
    p = PAYLOADS.get(event_type)
    return frozenset(f.encode_name for f in msgspec.structs.fields(p)) if p else frozenset()


def split_payload(
    event_type: str, payload: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A built-in type's payload as (the fields its schema knows, the others). A registered
    type's free payload is all known."""
    known = _payload_fields(event_type)
    if not known:
        return dict(payload), {}
    ours = {k: v for k, v in payload.items() if k in known}
    return ours, {k: v for k, v in payload.items() if k not in known}


def payload_record(event: Event) -> dict[str, Any]:
    """The payload as the producer sent it: the schema's fields and the extra ones, in one
    object (what the event log stores and views show)."""
    p = event.payload
    rec: dict[str, Any] = p if isinstance(p, dict) else msgspec.to_builtins(p)
    return {**rec, **event.extra} if event.extra else dict(rec)


def _class_name(event_type: str) -> str:
    return "".join(p.capitalize() for p in event_type.replace("_", ".").split(".")) + "Event"


def _variant(event_type: str, payload: Any) -> type[Event]:
    required = isinstance(payload, type) and any(
        f.required for f in msgspec.structs.fields(payload)
    )
    field: tuple[str, Any] | tuple[str, Any, Any] = (
        ("payload", payload)
        if required
        else ("payload", payload, msgspec.field(default_factory=payload))
    )
    return msgspec.defstruct(  # type: ignore[no-any-return]
        _class_name(event_type),
        [field],
        bases=(Event,),
        # A plain class attribute: `event.type` is read for every event on the hot path, and
        # this is several times cheaper than the base class's property.
        namespace={"type": event_type},
        tag=event_type,
        frozen=True,
        forbid_unknown_fields=True,
        kw_only=True,
        gc=False,
    )


_BUILTIN = {t: _variant(t, p) for t, p in PAYLOADS.items()}


@functools.cache
def event_types(extra_types: tuple[str, ...] = ()) -> tuple[type[Event], ...]:
    """The event structs: the built-in set plus the workspace's registered types."""
    extra = [_variant(t, dict[str, Any]) for t in extra_types if t not in PAYLOADS]
    return (*_BUILTIN.values(), *extra)


def event_union(extra_types: tuple[str, ...] = ()) -> Any:
    """The tagged union of all event structs, for decoders."""
    return Union[event_types(extra_types)]  # noqa: UP007


def make_event(event_type: str, **fields: Any) -> Event:
    """Build an event in code (tests, simulators), validated like parsed input but for the ids,
    which are the code's own (the parsers hold input's ids to `ids_problem`)."""
    return msgspec.convert({"type": event_type, **fields}, event_union(), strict=False)  # type: ignore[no-any-return]


def json_schema(extra_types: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of the envelope (one variant per event type)."""
    schema: dict[str, Any] = msgspec.json.schema(event_union(extra_types))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "tenure event envelope v1"
    return schema
