"""Benchmark: Skyvault against restic and borg on the same data, in the same run.

`python -m bench.run` (or `make bench`); see bench/README.md.
"""
