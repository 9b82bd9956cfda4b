"""The benchmark suite of issue 5: `python -m benchmarks` (see README.md beside this file)."""
