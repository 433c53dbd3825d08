"""The matching node: `book.py` is the pure price-time core; the journal-driven engine and node build on it."""
