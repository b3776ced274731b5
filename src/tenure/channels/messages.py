"""Messages: templates per channel, rendered at send time in Jinja2's sandbox.

A template is a set of files under `<workspace>/templates/` (then the built-in ones, in
`channels/templates/`), named by the template, the channel and the part:

    <name>.<channel>.subject.txt     the email's subject (one line)
    <name>.<channel>.txt             the plain text: an email's text part, an SMS's body
    <name>.<channel>.html            the email's HTML part (autoescaped), when there is one
    <name>.<locale>.<channel>.<part> the same part for customers of a locale (`fr`, `fr-CA`)

The first directory holding any default part of `<name>.<channel>` owns the template (a workspace
template is never mixed with a built-in one). Each part is looked up for the customer's locale
(`fr-CA`, then `fr`), then as the default. An action without a journey sends the template named
after the action when there is one, else `action`.

A template sees `customer` (id, name, plan, segment, timezone, locale), `decision` (id, action,
channel, offer, points, valid_days, expires), `payload` (the send step's payload), `programme`
(id, name, brand) and `unsubscribe_url`. Undefined names are errors (StrictUndefined), so a
policy that would send a template with a typo is refused when it is validated (`check_policy`),
not when a customer is written to.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from tenure.channels.adapters import ChannelSettings, Letter, Message, Needs
from tenure.channels.unsubscribe import Unsubscribe, sign
from tenure.errors import ConfigError
from tenure.events.personal import mask
from tenure.features.state import TRAITS, locale_tag, traits
from tenure.journeys.library import JourneyLibrary
from tenure.journeys.spec import JourneyError, Send
from tenure.loyalty.contracts import Contract
from tenure.policy.model import CONSENT_PURPOSE, Policy
from tenure.store.db import Store
from tenure.store.personal import personal
from tenure.store.queries import current_states

BUILTIN = Path(__file__).parent / "templates"
# A part and the end of its file name.
PARTS = {"subject": "subject.txt", "text": "txt", "html": "html"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9_\-]+)*$")
# What a composed letter needs: which personal value it goes to, which parts must exist.
CONTACT: dict[Needs, str] = {"email": "email", "sms": "phone"}
REQUIRED: dict[Needs, tuple[str, ...]] = {"email": ("subject", "text"), "sms": ("text",)}
# Which channel types compose letters (and so need templates).
NEEDS_OF_TYPE: dict[str, Needs] = {"smtp": "email", "sms": "sms"}


class TemplateError(ConfigError):
    """A template that is missing or does not render; the message names the file and why."""


class NoAddress(TemplateError):
    """The customer has no address for this channel: the send is skipped, with this reason."""


@dataclass(frozen=True)
class Programme:
    """The loyalty programme messages speak for."""

    id: str = "default"
    name: str = ""
    brand: str | None = None


def programme_of(contracts: Sequence[Contract], programme_id: str) -> Programme:
    """The programme journeys grant in, named after the own-brand programme (else the first
    contract) that runs it."""
    runs = [c for c in contracts if c.programme == programme_id]
    runs.sort(key=lambda c: not c.own_brand)
    if not runs:
        return Programme(programme_id)
    return Programme(programme_id, runs[0].id, runs[0].oem)


@dataclass(frozen=True)
class Rendered:
    """A template rendered: each part's text, and the file each part came from."""

    name: str
    parts: dict[str, str]
    sources: dict[str, Path] = field(default_factory=dict)


def _checked_name(name: str, what: str = "template") -> str:
    """A template or channel name that can only name a file in a templates directory."""
    if len(name) > 150 or not _NAME.match(name):
        raise TemplateError(
            f"{what} {name!r}: a {what} name in a template file is letters, digits, '-', '_' "
            "and inner dots"
        )
    return name


def _locales(locale: str | None) -> list[str]:
    """The locale tags to try for a customer, most specific first (`fr-CA`, `fr`)."""
    tag = locale_tag(locale)
    if tag is None:
        return []
    language = tag.partition("-")[0]
    return [tag] if language == tag else [tag, language]


def _line_of(exc: BaseException, path: Path) -> int | None:
    """The template line an error was raised on (Jinja rewrites tracebacks onto its files)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class Templates:
    """The templates of a workspace: its own `templates/`, then the built-in ones."""

    def __init__(self, *directories: Path) -> None:
        self.directories = (*directories, BUILTIN)

    @classmethod
    def of(cls, workspace: Path) -> Templates:
        """A workspace's templates."""
        return cls(workspace / "templates")

    @staticmethod
    @cache
    def _env(directory: Path) -> SandboxedEnvironment:
        return SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(directory),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False, default=False),
            trim_blocks=True,  # a line holding only a block tag leaves no blank line behind
            lstrip_blocks=True,
        )

    def owner(self, name: str, channel: str) -> Path | None:
        """The directory that holds this template for this channel, or None."""
        _checked_name(name)
        _checked_name(channel, "channel")
        for directory in self.directories:
            if any((directory / f"{name}.{channel}.{end}").is_file() for end in PARTS.values()):
                return directory
        return None

    def files(self, name: str, channel: str, locale: str | None = None) -> dict[str, Path]:
        """Each part's file for a customer of `locale` (empty when there is no such template)."""
        directory = self.owner(name, channel)
        if directory is None:
            return {}
        found = {}
        for part, end in PARTS.items():
            tries = [f"{name}.{tag}.{channel}.{end}" for tag in _locales(locale)]
            for file in (*tries, f"{name}.{channel}.{end}"):
                if (directory / file).is_file():
                    found[part] = directory / file
                    break
        return found

    def locales(self, name: str, channel: str) -> list[str]:
        """The locales this template has parts of its own for."""
        directory = self.owner(name, channel)
        if directory is None:
            return []
        tags = set()
        for path in directory.glob(f"{name}.*.{channel}.*"):
            middle = path.name[len(name) + 1 :].partition(".")[0]
            if locale_tag(middle) == middle and any(path.name.endswith(e) for e in PARTS.values()):
                tags.add(middle)
        return sorted(tags)

    def pick(self, names: Sequence[str], channel: str) -> str:
        """The first of `names` that is a template for `channel` (else the last)."""
        return next((n for n in names if self.owner(n, channel) is not None), names[-1])

    def render(
        self,
        names: Sequence[str],
        channel: str,
        context: Mapping[str, Any],
        needs: Needs | None = None,
    ) -> Rendered:
        """Render the template's parts for the context's customer; refuse when a part `needs`
        is missing or any part does not render."""
        name = self.pick(names, channel)
        files = self.files(name, channel, context["customer"]["locale"])
        missing = [p for p in (REQUIRED[needs] if needs else ()) if p not in files]
        if missing:
            wanted = ", ".join(f"{name}.{channel}.{PARTS[p]}" for p in missing)
            raise TemplateError(
                f"template {name!r} on {channel}: no {wanted} in "
                f"{self.directories[0]} (nor built in)"
            )
        parts = {part: self._render(path, context) for part, path in files.items()}
        if "subject" in parts:
            parts["subject"] = " ".join(parts["subject"].split())  # one header line
        return Rendered(name, parts, files)

    def _render(self, path: Path, context: Mapping[str, Any]) -> str:
        try:
            return self._env(path.parent).get_template(path.name).render(context)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{path}: line {exc.lineno}: {exc.message}") from None
        except Exception as exc:  # undefined names, the sandbox, a filter on the wrong type
            line = _line_of(exc, path)
            where = f"line {line}: " if line else ""
            raise TemplateError(f"{path}: {where}{type(exc).__name__}: {exc}") from None


def template_names(template: str, action_id: str | None) -> list[str]:
    """The templates a send may use: a journey's `action` template is first the action's own."""
    if template == "action" and action_id and _NAME.match(action_id):
        return [action_id, "action"]
    return [template]


def _expires(payload: Mapping[str, Any], now: dt.datetime, tz: str | None) -> str | None:
    """The offer's last day: `expires` as given, else `valid_days` from now, in the customer's
    zone when known."""
    if payload.get("expires"):
        return str(payload["expires"])
    days = payload.get("valid_days")
    if not isinstance(days, int | float) or isinstance(days, bool):
        return None
    try:
        zone = zoneinfo.ZoneInfo(tz) if tz else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return (now.astimezone(zone) + dt.timedelta(days=float(days))).date().isoformat()


def context(
    message: Message,
    trait: Mapping[str, str | None],
    name: str | None,
    programme: Programme,
    unsubscribe_url: str,
    now: dt.datetime,
) -> dict[str, Any]:
    """What a template sees (the same keys for every message, None where a value is unknown)."""
    p = message.payload
    return {
        "customer": {"id": message.customer_id, "name": name or "", **trait},
        "decision": {
            "id": message.decision_id,
            "action": p.get("action_id"),
            "channel": message.channel,
            "offer": p.get("offer"),
            "points": p.get("points"),
            "valid_days": p.get("valid_days"),
            "expires": _expires(p, now, trait.get("timezone")),
        },
        "payload": dict(p),
        "programme": {"id": programme.id, "name": programme.name, "brand": programme.brand},
        "unsubscribe_url": unsubscribe_url,
    }


def _with_unsubscribe(rendered: Rendered, url: str) -> dict[str, str]:
    """Every marketing email carries its unsubscribe link: added when the template left it out."""
    parts = dict(rendered.parts)
    if "text" in parts and url not in parts["text"]:
        parts["text"] = parts["text"].rstrip("\n") + f"\n\nUnsubscribe: {url}\n"
    if "html" in parts and url.replace("&", "&amp;") not in parts["html"]:
        link = f'<p><a href="{url.replace("&", "&amp;")}">Unsubscribe</a></p>'
        html = parts["html"]
        at = html.lower().rfind("</body>")
        parts["html"] = html[:at] + link + html[at:] if at >= 0 else html + link
    return parts


@dataclass(frozen=True)
class Preview:
    """A template rendered for a customer, as `tenure templates preview` shows it."""

    rendered: Rendered
    to: str  # the address, masked, or why there is none
    locale: str | None
    unsubscribe_url: str


class Letters:
    """Composes letters at send time: the customer's address and traits from the store, the
    message rendered from its templates, an unsubscribe link signed with the workspace's key."""

    def __init__(self, templates: Templates, key: bytes, programme: Programme | None = None):
        self.templates = templates
        self.key = key
        self.programme = programme or Programme()

    def _context(
        self, store: Store, message: Message, settings: ChannelSettings, now: dt.datetime
    ) -> tuple[dict[str, Any], dict[str, str | None]]:
        with store.reader() as conn:
            values = personal(conn, message.customer_id)
            known = current_states(conn, [message.customer_id]).get(message.customer_id)
        trait = traits(known[0]) if known else dict.fromkeys(TRAITS)
        what = Unsubscribe(message.customer_id, message.channel, CONSENT_PURPOSE)
        url = settings.unsubscribe_url.replace("{token}", sign(self.key, what))
        return context(message, trait, values["name"], self.programme, url, now), values

    def compose(
        self,
        store: Store,
        message: Message,
        needs: Needs,
        settings: ChannelSettings,
        now: dt.datetime,
    ) -> Letter:
        """The letter for a message; NoAddress when the customer has none for it, a
        TemplateError when its template is missing or does not render."""
        ctx, values = self._context(store, message, settings, now)
        contact = values[CONTACT[needs]]
        if not contact:
            raise NoAddress(f"no {CONTACT[needs]} on file for the customer")
        names = template_names(message.template, message.payload.get("action_id"))
        rendered = self.templates.render(names, message.channel, ctx, needs)
        url = ctx["unsubscribe_url"]
        parts = _with_unsubscribe(rendered, url) if needs == "email" else rendered.parts
        return Letter(
            contact,
            parts["text"],
            parts.get("subject", ""),
            parts.get("html"),
            url if needs == "email" else "",
        )

    def preview(
        self,
        store: Store,
        message: Message,
        settings: ChannelSettings,
        now: dt.datetime,
    ) -> Preview:
        """Render a message's template for its customer without sending it."""
        ctx, values = self._context(store, message, settings, now)
        names = template_names(message.template, message.payload.get("action_id"))
        needs = NEEDS_OF_TYPE.get(settings.type)
        rendered = self.templates.render(names, message.channel, ctx, needs)
        if not rendered.parts:
            raise TemplateError(
                f"no template {rendered.name!r} for {message.channel}: write "
                f"{self.templates.directories[0]}/{rendered.name}.{message.channel}.txt"
            )
        url = ctx["unsubscribe_url"]
        if needs == "email":  # as it would go out: with its unsubscribe link
            rendered = Rendered(rendered.name, _with_unsubscribe(rendered, url), rendered.sources)
        if needs is None:
            to = f"nobody: a {settings.type} channel is not addressed"
        else:
            field = CONTACT[needs]
            to = mask(field, values[field]) or f"no {field} on file: the send would be skipped"
        return Preview(rendered, to, ctx["customer"]["locale"], url)


def step_payload(journeys: JourneyLibrary, name: str) -> dict[str, Any]:
    """The payload of the first journey step that sends template `name` (a preview's)."""
    for spec in journeys.specs.values():
        for step in spec.steps:
            if isinstance(step, Send) and step.template == name:
                return dict(step.payload)
    return {}


# ---------------------------------------------------------------- policy validation

SAMPLE_NOW = dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC)
SAMPLE_TRAITS = {"plan": "pro", "segment": "smb", "timezone": "UTC", "locale": None}
SAMPLE_PROGRAMME = Programme("default", "sample", "sample")


def _sends(policy: Policy, journeys: JourneyLibrary) -> Iterator[tuple[str, str, Send, str]]:
    """(action id, journey id, send step, channel) of every send a policy's actions can make."""
    for action in policy.actions:
        try:
            spec = journeys.get(action.journey)
        except JourneyError as exc:
            raise JourneyError(f"action {action.id!r}: {exc}") from None
        for step in spec.steps:
            if isinstance(step, Send):
                channel = action.channel if step.channel == "action" else step.channel
                yield action.id, spec.id, step, channel


def check_policy(
    policy: Policy,
    journeys: JourneyLibrary,
    templates: Templates,
    channels: Mapping[str, ChannelSettings],
) -> int:
    """Refuse a policy with an action whose journey is unknown, or whose sends lack a template
    their channel needs or have one that does not render (against a sample customer and the
    step's payload), naming the action, the step, the file and the reason. Returns how many
    template renderings were checked."""
    checked = 0
    url = "https://tenure.example/v1/unsubscribe/sample-token"
    for action_id, journey_id, step, channel in _sends(policy, journeys):
        needs = NEEDS_OF_TYPE.get((channels.get(channel) or ChannelSettings()).type)
        names = template_names(step.template, action_id)
        if needs is None and not all(_NAME.match(n) for n in (*names, channel)):
            continue  # a structured channel, named so no template file can be its: nothing to do
        payload = {**step.payload, "action_id": action_id}
        message = Message("sample", "d-sample", "c-sample", channel, step.template, payload)
        try:
            name = templates.pick(names, channel)
            if needs is None and templates.owner(name, channel) is None:
                continue  # a structured channel (file, webhook): its receiver renders
            for locale in [None, *templates.locales(name, channel)]:
                trait = {**SAMPLE_TRAITS, "locale": locale}
                ctx = context(message, trait, "Sam", SAMPLE_PROGRAMME, url, SAMPLE_NOW)
                templates.render(names, channel, ctx, needs)
                checked += 1
        except TemplateError as exc:
            raise TemplateError(
                f"policy {policy.id!r} action {action_id!r} (journey {journey_id!r}, step "
                f"{step.id!r}): {exc}"
            ) from None
    return checked
