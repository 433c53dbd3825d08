"""The gateway: HTTP (and, later, WebSocket) <-> NATS; auth, idempotency, rate limits, problem+json."""
