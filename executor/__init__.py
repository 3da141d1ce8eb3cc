"""The ``executor`` namespace: home of :mod:`executor.engine`.

PYTEST_DONT_REWRITE: pytest marks this package for assertion rewriting, as
part of the plugin's distribution; a worker session has imported it before
pytest starts (a dask session, to unpickle its state), and this marker spares
it pytest's "already imported, cannot be rewritten" warning, which a suite's
``filterwarnings = error`` turns into a failed start.  Its submodules are
rewritten as usual.
"""
