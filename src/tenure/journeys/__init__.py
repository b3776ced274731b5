"""Act: durable multi-step journeys (send, wait, branch, grant, ticket, human, compensate).

Not built yet. Decided actions already wait in the outbox (`store.schema.outbox`, kind
`journey.start`, idempotency key `<decision_id>:start`); the Temporal workflows that take them
from there live here.
"""
