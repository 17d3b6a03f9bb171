"""Benchmarks: `make bench` prints each figure as `BENCH <name> <value> <unit>`."""
