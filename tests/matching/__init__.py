"""Matching tests: the pure book against a simple reference model, regressions, bad input, checksum."""
