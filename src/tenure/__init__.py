"""tenure: an engine that keeps customers.

Events come in, are perceived (validated, deduplicated, turned into features and scores), decided on
by versioned policies under guardrails, acted on through durable journeys, and proved by a
hash-chained audit.
"""

__version__ = "0.1.0"
