"""Backends: where jobs run (the engine's loop, a thread pool, a warm process pool, dask)."""
