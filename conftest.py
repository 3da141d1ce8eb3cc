"""Root conftest: enables pytester for the plugin's acceptance tests."""

pytest_plugins = ["pytester"]
