"""The expression language shared by policies, journeys and loyalty contracts: expressions in
the zen-engine language (a policy's conditions and escalations, a journey's `branch`, a
contract's earn rules).

A policy condition sees `risk`, `value`, `features` (every snapshot field, windows and consent
included) and `event` (the triggering event's `type`), e.g.
`features.plan == "pro" and features.usage_trend < 0.5`. Each expression is compiled once and
kept; a syntax error fails the policy file with the field named, and an expression that cannot be
evaluated for a customer (say, comparing a missing value) counts as false, with the reason kept.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import zen


def _message(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    try:
        data = json.loads(text)
        return str(data.get("source") or data.get("type") or text)
    except ValueError:
        return text


def check(expression: str) -> str | None:
    """None when `expression` parses, else what is wrong with it."""
    problem = zen.validate_expression(expression)
    if problem:
        return str(problem.get("source") or problem)
    return None


def parsed(expression: str) -> str:
    """The expression itself when it parses; a ValueError saying why not (for validators)."""
    problem = check(expression)
    if problem:
        raise ValueError(f"expression does not parse: {problem}")
    return expression


@functools.lru_cache(maxsize=4096)
def _compiled(expression: str) -> Any:
    return zen.compile_expression(expression)


def holds(expression: str, context: dict[str, Any]) -> tuple[bool, str | None]:
    """(whether the condition holds, an evaluation error if there was one)."""
    try:
        result = _compiled(expression).evaluate(context)
    except RuntimeError as exc:
        return False, _message(exc)
    return result is True, None
