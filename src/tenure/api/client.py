"""A thin typed client of the tenure API (httpx): events in, decisions a page at a time (it
follows each answer's `Link: <...>; rel="next"`), one decision, one customer.

    with Client("http://127.0.0.1:8000", token) as api:
        api.post_events([{"event_id": "e-1", "type": "usage", ...}])
        for decision in api.decisions(status="action"):
            ...

Every error answer raises `ApiError` with the problem document the service sent (its `title`,
`detail`, and for a refusal the `rule`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypedDict, cast
from urllib.parse import quote

import httpx

PAGE_SIZE = 100


class EventResult(TypedDict, total=False):
    """What became of one event of a batch (`field` and `reason` for a rejected one)."""

    index: int
    event_id: str
    status: Literal["accepted", "duplicate", "rejected"]
    field: str
    reason: str


class Ingested(TypedDict):
    """The answer to a batch: per event its result, and the decisions the batch caused."""

    results: list[EventResult]
    decisions: list[dict[str, Any]]


class Decision(TypedDict):
    """A decision as `GET /v1/decisions` lists it."""

    decision_id: str
    mode: str
    customer_id: str
    decided_at: str
    status: str
    action_id: str | None
    channel: str | None
    guardrail: str | None
    risk: float
    reason: str
    policy_id: str
    trigger_event_id: str
    audit_seq: int
    scorer: str
    scorer_version: str
    explanation: list[Any]


class ApiError(Exception):
    """An error answer: its status and the problem document (RFC 9457) it carried."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")


class Client:
    """One API, one bearer token; `http` may be any httpx client (a test's, for one)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self.owned = http is None
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (only one this client made)."""
        if self.owned:
            self.http.close()

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request with the token; an error answer raises `ApiError`."""
        response = self.http.request(method, url, headers=self.headers, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text}
            raise ApiError(response.status_code, problem)
        return response

    def post_events(self, events: Sequence[Mapping[str, Any]]) -> Ingested:
        """Send a batch; per event accepted, duplicate or rejected, and the decisions."""
        return cast(Ingested, self.call("POST", "/v1/events", json=list(events)).json())

    def pages(self, path: str, **params: Any) -> Iterator[list[dict[str, Any]]]:
        """Every page of a list, following the `Link` header's next until there is none."""
        url: str | None = path
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        while url is not None:
            response = self.call("GET", url, params=query)
            yield response.json()
            url = response.links.get("next", {}).get("url")
            query = None  # the next link carries the whole query

    def decisions(
        self,
        customer_id: str | None = None,
        status: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[Decision]:
        """Decisions newest first, every one exactly once, fetched `page_size` at a time."""
        for page in self.pages(
            "/v1/decisions", customer_id=customer_id, status=status, limit=page_size
        ):
            yield from cast(list[Decision], page)

    def decision(self, decision_id: str) -> dict[str, Any]:
        """One decision's full record: candidates, guardrail verdicts, lineage."""
        return cast(
            dict[str, Any], self.call("GET", f"/v1/decisions/{quote(decision_id, safe='')}").json()
        )

    def customer(self, customer_id: str, fields: Sequence[str] = ()) -> dict[str, Any]:
        """One customer's view (only `fields` when given)."""
        params = {"fields": ",".join(fields)} if fields else None
        return cast(
            dict[str, Any],
            self.call("GET", f"/v1/customers/{quote(customer_id, safe='')}", params=params).json(),
        )
