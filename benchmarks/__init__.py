"""Benchmarks: measurements of beam-pipelines beside its peers (see README.md)."""
