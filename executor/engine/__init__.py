"""executor.engine: submit callables, commands and web apps as jobs and run them
in-process, on threads, on a warm process pool or on a dask cluster."""
