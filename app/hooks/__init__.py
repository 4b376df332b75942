"""Webhooks: registration, a durable outbox, and signed, retried delivery."""
