"""The matching node: `book.py` is the pure price-time core; the journal-driven engine and node build on it.

Importing the package selects the book's build (compiled or pure Python) for the whole process: `book_build`.
"""

from nodes.matching.book_build import BUILD as BOOK_BUILD

__all__ = ["BOOK_BUILD"]
