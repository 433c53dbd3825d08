"""The I/O half of the contracts: how processes talk over NATS (requests, stream and bucket setup, stream
and DLQ readers) and retry its failures. `contracts` holds the pure models, subjects and codec."""
