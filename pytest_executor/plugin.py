"""The pytest11 entry point of pytest-executor (placeholder until the plugin lands)."""
