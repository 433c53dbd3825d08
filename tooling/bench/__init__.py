"""Benchmarks run with `qt bench ...`; results go to BENCHMARKS.md, never into CI assertions."""
