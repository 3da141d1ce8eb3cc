"""The foreign plugins the dev extra installs for ``tests/plugin/test_compat.py``.

Every other test session switches them off, so that the suite runs as it would
without them: put :data:`OFF` into ``PYTEST_ADDOPTS`` of the sessions you start.
"""

OFF = "-p no:benchmark -p no:dependency -p no:pytest_order -p no:rerunfailures"
