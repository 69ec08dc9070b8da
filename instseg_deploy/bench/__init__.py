"""Benchmarks: latency/throughput per backend against the machine's measured compute peak."""
