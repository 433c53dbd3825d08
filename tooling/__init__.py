"""The `qt` CLI: supervisor, ops commands, seed, smoke and benchmarks (talks to nodes over NATS)."""
