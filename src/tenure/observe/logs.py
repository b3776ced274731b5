"""Structured logs: JSON lines on stderr (or a file), personal data masked before rendering.

Every line is one JSON object: `timestamp` (ISO, UTC), `level`, `logger`, `event` (what
happened) and the ids bound for the work at hand. A customer event's `event_id` is the
`correlation_id` of everything it causes: the decision, the journey it starts, each activity and
each delivery of that journey log it (it travels in the outbox row and in the journey's input).
The ids are bound with `structlog.contextvars`, so a line inside an activity or an API request
carries them without being handed them.

Masking runs last before rendering, on every line: the values of sensitive keys (`name`,
`email`, `phone` and their variants, at any depth) become a short keyed digest such as
`<email:3f9a1c0b2e>`, and anything that looks like an email address or a phone number inside any
other string is replaced the same way. Equal values give equal digests within a process (and
across processes when `TENURE_LOG_MASK_KEY` is set), so lines about one person can still be
matched without showing who it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from opentelemetry import trace

SENSITIVE_KEYS = frozenset(
    {
        "name",
        "first_name",
        "last_name",
        "full_name",
        "given_name",
        "family_name",
        "email",
        "phone",
        "phone_number",
        "mobile",
    }
)
LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("json", "console")

_KEY = os.environ.get("TENURE_LOG_MASK_KEY", "").encode() or secrets.token_bytes(16)
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")
# A run of 8 to 15 digits, optionally with a leading +, spaces, dots, dashes or parentheses;
# ISO dates and decimals are let through in `_phone` (they match the shape but are not phones).
_PHONE = re.compile(r"(?<![\w+.-])\+?\(?\d[\d ().-]{6,22}\d(?![\w-])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGESTED = re.compile(r"<[a-z_]+:$")


def _digest(kind: str, value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    mac = hmac.new(_KEY, text.encode(), hashlib.sha256).hexdigest()[:10]
    return f"<{kind}:{mac}>"


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    # A digest made above can be all digits (about 1 key in 100 for a given value): it is
    # already masked, and masking it again would break "equal values, equal digests".
    if _DIGESTED.search(match.string, 0, match.start()) and match.string[match.end() :][:1] == ">":
        return text
    digits = sum(c.isdigit() for c in text)
    if not 8 <= digits <= 15 or _DATE.match(text.lstrip("+(")):
        return text
    if text.count(".") == 1 and not any(c in text for c in " ()-+"):
        return text  # a decimal number
    return _digest("phone", text)


def scrub(text: str) -> str:
    """`text` with email addresses and phone numbers replaced by digests."""
    if "@" in text:
        text = _EMAIL.sub(lambda m: _digest("email", m.group(0)), text)
    return _PHONE.sub(_phone, text)


def _kind(key: Any) -> str | None:
    """What a key holds when it is sensitive (email, phone, name), else None."""
    if not isinstance(key, str):
        return None
    k = key.lower()
    if k.endswith("email"):
        return "email"
    if k.endswith(("phone", "phone_number", "mobile")):
        return "phone"
    return "name" if k in SENSITIVE_KEYS else None


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            kind = _kind(k)
            # The same digest as inside text (an email under `email` or in a sentence), so
            # lines about one person match up whichever way they mention them.
            out[k] = _masked(v) if kind is None or v in (None, "") else _digest(kind, v)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    return value


def mask(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: sensitive keys digested, emails and phone numbers scrubbed."""
    return _masked(event_dict)


def _trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """The current span's trace and span ids, so a line leads to its trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


class _Named(structlog.WriteLogger):
    """A write logger that knows the module it logs for (the `logger` field)."""

    def __init__(self, file: Any, name: str) -> None:
        super().__init__(file)
        self.name = name


def _logger_name(logger: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("logger", getattr(logger, "name", "tenure"))
    return event_dict


_FIRST = ("timestamp", "level", "logger", "event")


def _json(_: Any, __: str, event_dict: dict[str, Any]) -> str:
    # What and when first, for a person reading the file; the ids and details after.
    ordered = {k: event_dict.pop(k) for k in _FIRST if k in event_dict}
    ordered.update(event_dict)
    return orjson.dumps(ordered, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class _Stderr:
    """Writes to whatever `sys.stderr` is at the time (a test's capture, a redirected stream)."""

    def write(self, text: str) -> None:
        sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_state: dict[str, Any] = {"level": logging.WARNING, "file": None}


def configure_logging(
    level: str = "warning", fmt: str = "json", file: Path | TextIO | None = None
) -> None:
    """Send tenure's logs at `level` and up to stderr (or `file`): JSON lines or console text."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    number = logging.getLevelNamesMapping()[level.upper()]
    previous = _state.get("file")
    if isinstance(previous, _Opened):
        previous.close()
    sink: Any
    if file is None:
        sink = _Stderr()
    elif isinstance(file, Path):
        file.parent.mkdir(parents=True, exist_ok=True)
        sink = _Opened(file)
    else:
        sink = file
    _state.update(level=number, file=sink)
    renderer: Any = (
        _json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _trace_ids,
            structlog.processors.format_exc_info,
            mask,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=lambda *args: _Named(sink, str(args[0]) if args else "tenure"),
        # Not cached: a later configure_logging (the CLI's options, a test) applies at once.
        cache_logger_on_first_use=False,
    )


class _Opened:
    """A log file opened for appending, one flushed line per record."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a", encoding="utf-8", buffering=1)

    def write(self, text: str) -> None:
        self._fh.write(text)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def get_logger(name: str) -> Any:
    """A structlog logger that names its module (`logger` on every line)."""
    return structlog.get_logger(name)


def enabled(level: int) -> bool:
    """Whether lines at `level` are written (to skip building lines nobody reads)."""
    return level >= _state["level"]


@contextlib.contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Bind these ids (the empty ones left out) to every line logged inside the block."""
    with structlog.contextvars.bound_contextvars(
        **{k: v for k, v in ids.items() if v not in (None, "")}
    ):
        yield


# Masked from the first line, even before (or without) the CLI's configuration: warnings and
# errors only, on stderr. An application that configures structlog itself keeps its own set-up
# and should add `mask` to its processors.
if not structlog.is_configured():
    configure_logging()
