"""The gateway: HTTP + WebSocket <-> NATS (built in the gateway issue; nothing here yet)."""
