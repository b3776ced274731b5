"""Personal data in responses: clear for the roles that may see it, masked for the rest."""

from __future__ import annotations

from typing import Any

from tenure.api.service import PERSONAL_DATA_ROLES
from tenure.events.personal import mask


def mask_view(view: dict[str, Any], role: str) -> dict[str, Any]:
    """A customer view as `role` may see it."""
    if role in PERSONAL_DATA_ROLES or not view.get("personal"):
        return view
    return {**view, "personal": {f: mask(f, v) for f, v in view["personal"].items()}}
