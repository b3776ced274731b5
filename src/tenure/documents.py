"""The one way tenure reads a YAML document (workspace settings, policies, policy test cases,
journeys, contracts, CSV mappings): safe loading only, and every way reading can fail turned
into one error that names the file and what it was meant to be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tenure.errors import ConfigError, TenureError


def read_yaml(path: Path, what: str, error: type[TenureError] = ConfigError) -> Any:
    """The parsed document at `path` (None for an empty file).

    `what` names the document in messages ("policy", "journey", ...); `error` is the exception
    raised, so each kind of file fails with its own error class.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{path} is a directory, not a {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from None
    except RecursionError:
        # A hostile document nested deeper than the parser's stack: refused, never a crash.
        raise error(f"cannot read {what} {path}: nested too deeply") from None
