"""Act: delivery adapters (file outbox, webhook, SMTP, CRM, human tasks). Not built yet."""
