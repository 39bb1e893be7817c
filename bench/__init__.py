"""Benchmarks: `python -m bench.<name>`; each module's docstring says what it measures."""
