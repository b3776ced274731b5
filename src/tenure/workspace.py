"""One workspace, loaded once: its settings, journeys, contracts, tiers and channels.

Every entry point (CLI, API, worker, diff, demo) reads the workspace through `Workspace.load`, so
no two of them can see a different set of journeys or contracts (they once did: `tenure run` knew
a workspace's custom journey and `tenure policy diff` did not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tenure.channels.adapters import ChannelSettings
from tenure.config import Settings, resolve
from tenure.errors import ConfigError
from tenure.events.parse import LineParser
from tenure.journeys.library import JourneyLibrary
from tenure.loyalty.contracts import Contract, load_contract, load_programme
from tenure.loyalty.tiers import Tiers
from tenure.policy.guardrails import GuardrailSettings


def load_contracts(root: Path) -> tuple[Contract, ...]:
    """The contracts in `<root>/contracts/*.yaml`, then the own-brand programmes in
    `<root>/programmes/*.yaml` (as contracts funded by their brand), each in file-name order."""
    found = []
    for folder, load in (("contracts", load_contract), ("programmes", load_programme)):
        directory = root / folder
        if directory.is_dir():
            found += [load(p) for p in sorted(directory.glob("*.y*ml"))]
    ids = [c.id for c in found]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ConfigError(f"{root}: contract and programme ids must be unique: {twice} repeat")
    return tuple(found)


@dataclass(frozen=True)
class Workspace:
    """What a workspace directory configures, read once."""

    settings: Settings
    journeys: JourneyLibrary
    contracts: tuple[Contract, ...]

    @classmethod
    def load(cls, settings: Settings) -> Workspace:
        """Read the journeys and contracts of resolved settings' workspace."""
        root = settings.workspace
        return cls(settings, JourneyLibrary(root / "journeys"), load_contracts(root))

    @classmethod
    def open(cls, root: Path | None = None, database_url: str | None = None) -> Workspace:
        """Resolve the settings (arguments, TENURE_* variables, defaults) and load."""
        return cls.load(resolve(root, database_url))

    @property
    def root(self) -> Path:
        """The workspace directory."""
        return self.settings.workspace

    @property
    def database_url(self) -> str:
        """Where its store lives."""
        return self.settings.database_url

    @property
    def guardrails(self) -> GuardrailSettings:
        """The guardrails no policy can switch off."""
        return self.settings.guardrails

    @property
    def tiers(self) -> Mapping[str, Tiers]:
        """Tier rules per programme."""
        return self.settings.tiers

    @property
    def channels(self) -> Mapping[str, ChannelSettings]:
        """Configured channels by name."""
        return self.settings.channels

    def parser(self) -> LineParser:
        """A line parser that knows the workspace's registered event types."""
        s = self.settings
        return LineParser(
            s.extra_event_types, strict=s.strict_types, zones=s.source_zones, rates=s.rates
        )
