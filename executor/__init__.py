"""The ``executor`` namespace: home of :mod:`executor.engine`.

PYTEST_DONT_REWRITE: pytest marks this package for rewriting with the plugin's
distribution; why it opts out is told in :mod:`pytest_executor`.
"""
