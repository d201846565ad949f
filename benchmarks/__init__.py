"""Benchmarks: measurements for docs/, never run as tests."""
