"""Policy lifecycle: draft -> shadow -> canary -> active -> retired, and who decides with what.

A shadow policy decides on the same customers with no effect (its decisions are stored with
mode=shadow, nothing is sent, no budget is used). A canary decides for real for a stable hash
share of customers; the active policy decides for everyone else. Promotion to active needs an
approver other than the author; rollback is promoting the previous version again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from tenure.errors import ConfigError
from tenure.policy.model import Policy

Status = Literal["draft", "shadow", "canary", "active", "retired"]
STATUSES: tuple[Status, ...] = ("draft", "shadow", "canary", "active", "retired")


def in_canary(customer_id: str, canary: Policy, percent: float) -> bool:
    """Stable canary membership: a fresh sample for each canary version, fixed for the customer."""
    digest = hashlib.sha256(f"{canary.content_hash}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100 < percent


@dataclass(frozen=True)
class PolicySet:
    """The policies a run decides with."""

    active: Policy
    canary: Policy | None = None
    canary_percent: float = 0.0
    shadows: tuple[Policy, ...] = ()
    by_hash: dict[str, Policy] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = [self.active, *([self.canary] if self.canary else []), *self.shadows]
        object.__setattr__(self, "by_hash", {p.content_hash: p for p in every})

    def live_for(self, customer_id: str) -> Policy:
        """The policy whose decisions take effect for this customer."""
        if self.canary is not None and in_canary(customer_id, self.canary, self.canary_percent):
            return self.canary
        return self.active

    def live_policies(self) -> list[Policy]:
        """Active first, then the canary."""
        return [self.active, *([self.canary] if self.canary else [])]

    def all(self) -> list[Policy]:
        """Every policy in the set."""
        return list(self.by_hash.values())


@dataclass(frozen=True)
class Transition:
    """A checked change of status, ready to be recorded and audited."""

    version: str
    policy_id: str
    from_status: Status
    to_status: Status
    percent: float | None
    by: str
    retired: tuple[str, ...] = ()  # versions this transition retires

    def to_record(self) -> dict[str, object]:
        """The transition as the audit chain and the API show it."""
        return {
            "version": self.version,
            "policy_id": self.policy_id,
            "from": self.from_status,
            "to": self.to_status,
            "percent": self.percent,
            "by": self.by,
            "retires": list(self.retired),
        }


def plan_transition(
    version: str,
    policy_id: str,
    author: str,
    current: Status,
    to: Status,
    by: str,
    percent: float | None,
    others: dict[str, tuple[str, Status]],
) -> Transition:
    """Check a promotion against the rules; `others` maps version -> (policy id, status)."""
    if to not in ("shadow", "canary", "active", "retired"):
        raise ConfigError(f"cannot move a policy to {to!r}: use shadow, canary, active or retired")
    if not by.strip():
        raise ConfigError("--by must name who makes the change")
    if to == "canary" and (percent is None or not 0 < percent < 100):
        raise ConfigError("a canary needs --percent between 0 and 100 (exclusive)")
    if to != "canary" and percent is not None:
        raise ConfigError("--percent only applies to --to canary")
    # Anything that changes what customers live with needs a second person: making a version
    # decide for real (canary or active), or taking the active version out of service.
    if to in ("canary", "active") and by.strip() == author:
        raise ConfigError(f"{author} wrote this version; someone else must approve it going {to}")
    if current == "active" and to != "active" and by.strip() == author:
        raise ConfigError(
            f"{author} wrote the active version; someone else must take it out of "
            "service (or promote a replacement)"
        )
    if current == to and to != "canary":
        raise ConfigError(f"version {version[:12]} is already {to}")
    retired: list[str] = []
    if to == "active":
        # One active policy; a canary of the same policy becomes moot when this one goes live.
        retired = [
            v
            for v, (_, status) in others.items()
            if v != version
            and (status == "active" or (status == "canary" and others[v][0] == policy_id))
        ]
    if to == "canary":
        retired = [v for v, (_, status) in others.items() if v != version and status == "canary"]
    return Transition(version, policy_id, current, to, percent, by.strip(), tuple(sorted(retired)))
