"""Configuration: the ``--executor-*`` options and ini keys, the ``job`` marker, the engine fixtures.

Everything a user writes to steer a run is read and validated here, where the
mistake is made, before anything runs.
"""
