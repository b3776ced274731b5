"""Act: delivery adapters (JSON lines files, webhook, SMTP, CRM tickets) and the courier that
sends each message once per idempotency key, with retries, dead letters, a circuit breaker and a
rate limit per channel kept in the store.
"""
