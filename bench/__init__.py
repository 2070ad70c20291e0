"""Benchmarks and offline stand-in models (shared with the test suite)."""
