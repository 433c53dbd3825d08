"""HTTP routes under `/v1`, one module per resource; each only validates, forwards and answers."""
