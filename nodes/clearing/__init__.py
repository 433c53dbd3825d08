"""Clearing: the place-order saga, its recovery, and hold releases for engine cancels."""
