"""What every node shares: config, connection, micro registration, dispatch, tracing, metrics."""
