"""pytest-executor: run a pytest suite as a graph of engine jobs."""
