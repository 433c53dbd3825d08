"""The vocabulary of the mesh: models, subjects, codec, money and errors."""
