"""Webhook signatures that resist replay (issue 16): the timestamp is signed with the body, a
receiver refuses a request outside its tolerance, and a key is rotated with two active keys."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tenure.channels.adapters import (
    SIGNATURE_TOLERANCE_S,
    ChannelSettings,
    WebhookChannel,
    signature,
    signing_keys,
    verify,
)
from tenure.errors import TenureError

BODY = b'{"decision_id": "d-1", "offer": "X"}'
NOW = 1_767_225_600


def test_a_signed_request_verifies_once_and_only_within_the_tolerance() -> None:
    keys = {"k1": "s3cret"}
    header = signature(keys, BODY, NOW)
    assert verify(header, BODY, keys, now=NOW + 10)
    # Captured and replayed later: refused; the timestamp cannot be moved without the key.
    assert not verify(header, BODY, keys, now=NOW + SIGNATURE_TOLERANCE_S + 1)
    moved = header.replace(f"t={NOW}", f"t={NOW + 3600}")
    assert not verify(moved, BODY, keys, now=NOW + 3600)
    assert not verify(header, BODY + b" ", keys, now=NOW)  # another body
    assert not verify(header, BODY, {"k1": "other"}, now=NOW)  # another key
    for bad in ("", "k1=abc", "t=soon,k1=abc", "t=1"):
        assert not verify(bad, BODY, keys, now=NOW)


def test_a_rotation_signs_with_both_keys_so_either_side_may_move_first() -> None:
    old, new = {"2026-06": "old-secret"}, {"2026-12": "new-secret"}
    header = signature({**old, **new}, BODY, NOW)
    assert header.startswith(f"t={NOW},2026-06=") and ",2026-12=" in header
    assert verify(header, BODY, old, now=NOW)  # a receiver not yet moved
    assert verify(header, BODY, new, now=NOW)  # a receiver already moved
    assert not verify(header, BODY, {"2026-12": "old-secret"}, now=NOW)  # id and key go together


def test_signing_keys_come_from_secret_or_keys_and_are_checked() -> None:
    assert signing_keys(ChannelSettings(type="webhook", secret="s"), "push") == {"default": "s"}
    two = {"a": "1", "b": "2"}
    assert signing_keys(ChannelSettings(type="webhook", keys=two), "push") == two
    assert signing_keys(ChannelSettings(type="webhook"), "push") == {}
    for bad in (
        {"secret": "s", "keys": {"a": "1"}},
        {"keys": {"a": "1", "b": "2", "c": "3"}},
        {"keys": {"t": "1"}},
        {"keys": {"a b": "1"}},
        {"keys": {"a": ""}},
    ):
        with pytest.raises(TenureError, match="push"):
            WebhookChannel(ChannelSettings(type="webhook", url="http://x", **bad), "push")


def test_the_readmes_verification_snippet_verifies_what_tenure_signs() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    start = readme.index("```python\nimport hashlib, hmac, time")
    code = readme[start + len("```python\n") : readme.index("```", start + 10)]
    scope: dict[str, Any] = {}
    exec(code, scope)  # the documented receiver, as a user would paste it
    keys = {"2026-12": "new-secret"}
    header = signature(keys, BODY, int(time.time()))
    assert scope["verify"](header, BODY, keys)
    assert not scope["verify"](header, BODY + b"x", keys)
    assert not scope["verify"](signature(keys, BODY, int(time.time()) - 3600), BODY, keys)
