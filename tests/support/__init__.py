"""What the tests and the benchmarks share: starting real services (in process, as child
processes, or the whole one-command stack), calling them, and the data they are fed."""
