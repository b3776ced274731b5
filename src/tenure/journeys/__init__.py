"""Act: durable multi-step journeys (send, wait, branch, grant, ticket, human, compensate).

`spec` validates a journey file, `machine.step` is the pure state machine, `library` finds the
built-in and workspace journeys; `workflow` and `activities` are the Temporal shell that runs a
journey started from the outbox (workflow id = decision id).
"""
