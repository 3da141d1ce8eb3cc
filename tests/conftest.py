"""Settings shared by the whole test suite."""

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps its example database and caches under the system's temporary
# directory, not in the working directory: the suite leaves nothing behind.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "pytest-executor-hypothesis"))
settings.register_profile("pytest-executor", database=None)
settings.load_profile("pytest-executor")
