"""Where journeys come from: the built-in ones, overridden or extended by the workspace's."""

from __future__ import annotations

from pathlib import Path

from tenure.journeys.spec import SINGLE_SEND, JourneyError, JourneySpec, load_journey

BUILTIN = Path(__file__).parent / "builtin"


class JourneyLibrary:
    """Journey specs by id: built-in files, then the workspace's `journeys/*.yaml` on top."""

    def __init__(self, *directories: Path) -> None:
        self.specs: dict[str, JourneySpec] = {SINGLE_SEND.id: SINGLE_SEND}
        self.sources: dict[str, str] = {SINGLE_SEND.id: "built in"}
        for directory in (BUILTIN, *directories):
            if not directory.is_dir():
                continue
            for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
                spec = load_journey(path)
                self.specs[spec.id] = spec
                self.sources[spec.id] = str(path)

    def get(self, journey_id: str | None) -> JourneySpec:
        """The spec of a journey id (None: deliver once)."""
        if journey_id is None:
            return SINGLE_SEND
        try:
            return self.specs[journey_id]
        except KeyError:
            known = ", ".join(sorted(self.specs))
            raise JourneyError(
                f"unknown journey {journey_id!r}: put {journey_id}.yaml in the workspace's "
                f"journeys/ directory (known: {known})"
            ) from None


def workspace_library(workspace: Path) -> JourneyLibrary:
    """The journeys a workspace can use."""
    return JourneyLibrary(workspace / "journeys")
