"""Benchmarks behind ``make bench``: scenarios on real parts, each figure with
a baseline measured in the same run. See docs/benchmarks.md."""
