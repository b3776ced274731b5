"""Where tenure keeps its things: the workspace and the database URL."""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tenure.channels.adapters import ChannelSettings
from tenure.documents import read_yaml
from tenure.errors import ConfigError, InputError, field_errors
from tenure.events.envelope import DEFAULT_MAX_FUTURE_SKEW, PAYLOADS, id_problem
from tenure.events.money import DEFAULT_CURRENCY, Rates, parse_rates
from tenure.loyalty.tiers import Tiers
from tenure.policy.guardrails import GuardrailSettings

DEFAULT_WORKSPACE = Path(".tenure")
KNOWN_SETTINGS = (
    "event_types",
    "guardrails",
    "channels",
    "programmes",
    "worker",
    "ingest",
    "time",
    "money",
)
# Perceived time (features/instants.py): how late an event may come and still be decided as if
# on time, and the evaluation period (UTC days by default). Two hours of lateness covers the
# usual delays (mobile SDKs flushing on reconnect, hourly exports from a point of sale or a
# billing system) while a day's decisions still go out early the next morning.
DEFAULT_LATENESS_S = 2 * 3600
DEFAULT_PERIOD_S = 86_400
DEFAULT_SWEEP_S = 60.0
DEFAULT_HEARTBEAT_S = 40.0


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one invocation."""

    workspace: Path
    database_url: str
    extra_event_types: tuple[str, ...] = ()
    guardrails: GuardrailSettings = field(default_factory=GuardrailSettings)
    channels: dict[str, ChannelSettings] = field(default_factory=dict)
    tiers: dict[str, Tiers] = field(default_factory=dict)  # programme -> its tier rules
    # How long a journey activity may go without a heartbeat before Temporal retries it elsewhere.
    activity_heartbeat_s: float = DEFAULT_HEARTBEAT_S
    # How far an event may be ahead of its run's newest event and of the clock (live runs and
    # the API: of the clock) before it is rejected.
    max_future_skew: dt.timedelta = DEFAULT_MAX_FUTURE_SKEW
    # Perceived time: allowed lateness, evaluation period, and how often a live worker sweeps
    # for instants the wall clock has passed (silent customers).
    lateness_s: int = DEFAULT_LATENESS_S
    period_s: int = DEFAULT_PERIOD_S
    sweep_s: float = DEFAULT_SWEEP_S
    # Schema evolution (`ingest:`): event types whose payloads stay strict (extra fields and
    # coerced values refused), and the zone of each source whose times come without one.
    strict_types: tuple[str, ...] = ()
    source_zones: dict[str, str] = field(default_factory=dict)
    # The reporting currency and the rates into it (`money: {currency: EUR, rates: FILE}`).
    rates: Rates = field(default_factory=Rates)
    # Per programme: grants and adjustments of more points than this wait for a second person
    # (`programmes: {default: {four_eyes_above: 500}}`); a programme not named: the default.
    four_eyes_above: dict[str, int] = field(default_factory=dict)


def resolve(workspace: Path | None = None, database_url: str | None = None) -> Settings:
    """Resolve settings: arguments, then TENURE_* variables, then defaults; make the workspace."""
    ws = workspace or Path(os.environ.get("TENURE_WORKSPACE") or DEFAULT_WORKSPACE)
    try:
        ws.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create workspace {ws}: {exc.strerror}") from None
    if not os.access(ws, os.R_OK | os.W_OK | os.X_OK):
        raise InputError(f"workspace {ws} is not readable and writable")
    url = database_url or os.environ.get("TENURE_DATABASE_URL") or f"sqlite:///{ws / 'tenure.db'}"
    config = _workspace_config(ws / "tenure.yaml")
    return Settings(
        ws,
        url,
        _registered_types(config, ws / "tenure.yaml"),
        _guardrails(config, ws / "tenure.yaml"),
        _channels(config, ws / "tenure.yaml"),
        _tiers(config, ws / "tenure.yaml"),
        _heartbeat(config, ws / "tenure.yaml"),
        _future_skew(config, ws / "tenure.yaml"),
        *_time(config, ws / "tenure.yaml"),
        *_evolution(config, ws / "tenure.yaml"),
        _money(config, ws),
        four_eyes_above=_four_eyes(config, ws / "tenure.yaml"),
    )


def _workspace_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = read_yaml(path, "workspace settings") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping (event_types, guardrails)")
    unknown = sorted(set(data) - set(KNOWN_SETTINGS))
    if unknown:
        known = ", ".join(KNOWN_SETTINGS)
        raise ConfigError(f"{path}: unknown settings {unknown} (known: {known})")
    return data


def _registered_types(config: dict[str, Any], path: Path) -> tuple[str, ...]:
    """Event types the workspace registers beyond the built-in ones (`event_types:`)."""
    types = config.get("event_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise ConfigError(f"{path}: event_types must be a list of type names")
    for t in types:
        if (problem := id_problem(t)) is not None:
            raise ConfigError(f"{path}: event_types: {t!r} {problem}")
    return tuple(sorted(set(types)))


def _guardrails(config: dict[str, Any], path: Path) -> GuardrailSettings:
    """The workspace's guardrails (`guardrails:`), defaults for what it leaves out."""
    try:
        return GuardrailSettings.model_validate(config.get("guardrails") or {})
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid guardrails: {field_errors(exc)}") from None


def _channels(config: dict[str, Any], path: Path) -> dict[str, ChannelSettings]:
    """Configured channels (`channels: {name: {type: webhook, url: ...}}`); others are files."""
    raw = config.get("channels") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: channels must be a mapping of channel name to settings")
    out = {}
    for name, value in raw.items():
        try:
            out[str(name)] = ChannelSettings.model_validate(value or {})
        except ValidationError as exc:
            raise ConfigError(f"{path}: channel {name!r}: {field_errors(exc)}") from None
        if out[str(name)].type in ("webhook", "crm") and not out[str(name)].url:
            raise ConfigError(
                f"{path}: channel {name!r}: a {out[str(name)].type} channel needs a url"
            )
    return out


def _tiers(config: dict[str, Any], path: Path) -> dict[str, Tiers]:
    """Tier rules per programme (`programmes: {default: {tiers: {...}}}`)."""
    raw = config.get("programmes") or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: programmes must map a programme name to its settings")
    out = {}
    for name, value in raw.items():
        if not isinstance(value, dict) or set(value) - _PROGRAMME_KEYS:
            raise ConfigError(
                f"{path}: programme {name!r}: only {', '.join(sorted(_PROGRAMME_KEYS))} can be set"
            )
        if value.get("tiers") is None:
            continue
        try:
            out[str(name)] = Tiers.model_validate(value["tiers"])
        except ValidationError as exc:
            raise ConfigError(f"{path}: programme {name!r} tiers: {field_errors(exc)}") from None
    return out


_PROGRAMME_KEYS = frozenset({"tiers", "four_eyes_above"})


def _four_eyes(config: dict[str, Any], path: Path) -> dict[str, int]:
    """`programmes: {NAME: {four_eyes_above: N}}`: grants and adjustments of more than N points
    wait for a second person's approval (0: every one does)."""
    out = {}
    for name, value in (config.get("programmes") or {}).items():
        limit = value.get("four_eyes_above") if isinstance(value, dict) else None
        if limit is None:
            continue
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(
                f"{path}: programme {name!r}: four_eyes_above must be a whole number of points "
                f"from 0, got {limit!r}"
            )
        out[str(name)] = limit
    return out


def _heartbeat(config: dict[str, Any], path: Path) -> float:
    """`worker: {activity_heartbeat_s: N}`: how soon a dead worker's activity is retried."""
    raw = config.get("worker") or {}
    if not isinstance(raw, dict) or set(raw) - {"activity_heartbeat_s"}:
        raise ConfigError(f"{path}: worker: only activity_heartbeat_s can be set")
    value = raw.get("activity_heartbeat_s", DEFAULT_HEARTBEAT_S)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 3600:
        raise ConfigError(
            f"{path}: worker.activity_heartbeat_s must be a number of seconds from 1 to 3600"
        )
    return float(value)


_SPAN = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_SPAN_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _future_skew(config: dict[str, Any], path: Path) -> dt.timedelta:
    """`ingest: {max_future_skew: 1d}`: how far ahead of the input an event may be."""
    raw = config.get("ingest") or {}
    if not isinstance(raw, dict) or set(raw) - _INGEST_KEYS:
        raise ConfigError(f"{path}: ingest: only {', '.join(sorted(_INGEST_KEYS))} can be set")
    value = raw.get("max_future_skew")
    if value is None:
        return DEFAULT_MAX_FUTURE_SKEW
    span = _span(value)
    skew = dt.timedelta(seconds=span) if span is not None else None
    if skew is None or not dt.timedelta(minutes=1) <= skew <= dt.timedelta(days=3650):
        raise ConfigError(
            f"{path}: ingest.max_future_skew must be a duration from 1m to 3650d "
            f"(a whole number followed by s, m, h or d, e.g. 1d), got {value!r}"
        )
    return skew


_INGEST_KEYS = frozenset({"max_future_skew", "strict", "timezones"})


def _evolution(config: dict[str, Any], path: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """`ingest: {strict: [purchase], timezones: {pos: Europe/Berlin}}`: the event types that
    refuse extra payload fields and coercion, and the zone of each source's naive times."""
    raw = config.get("ingest") or {}
    strict = raw.get("strict") or []
    if not isinstance(strict, list) or not all(isinstance(t, str) and t for t in strict):
        raise ConfigError(f"{path}: ingest.strict must be a list of event types")
    unknown = sorted(set(strict) - set(PAYLOADS))
    if unknown:
        raise ConfigError(f"{path}: ingest.strict: {unknown} are not built-in event types")
    zones = raw.get("timezones") or {}
    if not isinstance(zones, dict):
        raise ConfigError(f"{path}: ingest.timezones must map a source to an IANA time zone")
    for source, zone in zones.items():
        if not isinstance(zone, str) or zone not in zoneinfo.available_timezones():
            raise ConfigError(f"{path}: ingest.timezones.{source}: unknown time zone {zone!r}")
    return tuple(sorted(set(strict))), {str(k): v for k, v in zones.items()}


def _money(config: dict[str, Any], ws: Path) -> Rates:
    """`money: {currency: EUR, rates: rates.csv}`: the reporting currency (EUR by default) and
    the rates file (relative to the workspace) every other currency converts through."""
    path = ws / "tenure.yaml"
    raw = config.get("money") or {}
    if not isinstance(raw, dict) or set(raw) - {"currency", "rates"}:
        raise ConfigError(f"{path}: money: only currency and rates can be set")
    currency = raw.get("currency", DEFAULT_CURRENCY)
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise ConfigError(f"{path}: money.currency must be a currency code such as EUR")
    if raw.get("rates") is None:
        return Rates(currency)
    rates_path = ws / str(raw["rates"])
    try:
        text = rates_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        why = exc.strerror
        raise ConfigError(f"{path}: money.rates: cannot read {rates_path}: {why}") from None
    try:
        return parse_rates(text, currency, str(rates_path))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _span(value: Any) -> int | None:
    m = _SPAN.match(value) if isinstance(value, str) else None
    return int(m[1]) * _SPAN_S[m[2]] if m else None


def _time(config: dict[str, Any], path: Path) -> tuple[int, int, float]:
    """`time: {lateness: 2h, period: 1d, sweep_every: 1m}`: perceived time."""
    raw = config.get("time") or {}
    if not isinstance(raw, dict) or set(raw) - {"lateness", "period", "sweep_every"}:
        raise ConfigError(f"{path}: time: only lateness, period and sweep_every can be set")
    lateness = _span(raw.get("lateness", "2h"))
    if lateness is None or not 0 <= lateness <= 7 * 86_400:
        raise ConfigError(
            f"{path}: time.lateness must be a duration from 0s to 7d (e.g. 2h), "
            f"got {raw.get('lateness')!r}"
        )
    period = _span(raw.get("period", "1d"))
    if period is None or period < 3600 or (86_400 % period and period % 86_400):
        raise ConfigError(
            f"{path}: time.period must be whole hours dividing a day (1h, 2h, 3h, 4h, 6h, 8h, "
            f"12h) or whole days (1d, 7d), got {raw.get('period')!r}"
        )
    sweep = _span(raw.get("sweep_every", "1m"))
    if sweep is None or not 1 <= sweep <= 86_400:
        raise ConfigError(
            f"{path}: time.sweep_every must be a duration from 1s to 1d, "
            f"got {raw.get('sweep_every')!r}"
        )
    return lateness, period, float(sweep)
