"""The ``executor`` namespace: home of :mod:`executor.engine`."""
