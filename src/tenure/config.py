"""Where tenure keeps its things: the workspace and the database URL."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from tenure.errors import ConfigError, InputError

DEFAULT_WORKSPACE = Path(".tenure")


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one invocation."""

    workspace: Path
    database_url: str
    extra_event_types: tuple[str, ...] = ()

    @property
    def is_embedded(self) -> bool:
        """True when the store is the SQLite file in the workspace."""
        return self.database_url.startswith("sqlite")


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
    return Settings(ws, url, _registered_types(ws / "tenure.yaml"))


def _registered_types(path: Path) -> tuple[str, ...]:
    """Event types the workspace registers beyond the built-in ones (tenure.yaml)."""
    if not path.exists():
        return ()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    types = data.get("event_types", []) if isinstance(data, dict) else None
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise ConfigError(f"{path}: event_types must be a list of type names")
    return tuple(sorted(set(types)))
