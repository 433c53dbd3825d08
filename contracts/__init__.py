"""The vocabulary of the mesh: models, subjects, codec, money and errors (pure: no I/O; see `mesh`)."""
