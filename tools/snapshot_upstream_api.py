"""Regenerate ``tests/engine/data/upstream_api_0.3.3.json``: executor-engine 0.3.3's public surface.

executor-engine installs the same ``executor`` package as this project, so it
is described from a virtualenv of its own: ``--python`` names the interpreter
of one where it is installed; without it, one is made under a temporary
directory (``pip install executor-engine==0.3.3``) and removed afterwards.

    python tools/snapshot_upstream_api.py [--python /path/to/venv/bin/python]

``tests/engine/test_api_surface.py`` compares our modules with the snapshot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR = ROOT / "tests" / "engine" / "_api_surface.py"
SNAPSHOT = ROOT / "tests" / "engine" / "data" / "upstream_api_0.3.3.json"
UPSTREAM = "executor-engine==0.3.3"


def describe_with(python: str, extra_path: str | None = None) -> dict:
    """Run the collector under ``python`` (outside this checkout, so that it imports upstream's package).

    ``extra_path``: a site-packages dir appended to the path, for an
    upstream venv without ``dask`` (upstream's ``job.dask`` imports it).
    """
    with tempfile.TemporaryDirectory() as scratch:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if extra_path:
            env["PYTHONPATH"] = extra_path
        out = subprocess.run([python, str(COLLECTOR)], cwd=scratch, env=env, check=True,
                             capture_output=True, text=True).stdout
    surface = json.loads(out)
    version = subprocess.run([python, "-c", "import executor.engine as e; print(e.__version__)"],
                             cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True).stdout.strip()
    if version != "0.3.3":
        sys.exit(f"{python} has executor-engine {version!r}, not 0.3.3")
    return surface


def describe_in_new_venv() -> dict:
    """Make a throwaway virtualenv with executor-engine 0.3.3 and describe it."""
    with tempfile.TemporaryDirectory(prefix="executor-engine-0.3.3-") as tmp:
        venv.create(tmp, with_pip=True)
        python = str(Path(tmp) / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", UPSTREAM, "dask[distributed]"], check=True)
        return describe_with(python)


def main() -> None:
    """Write the snapshot file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="interpreter of a virtualenv that has executor-engine 0.3.3")
    parser.add_argument("--extra-path", help="site-packages appended to the path (where dask can be imported from)")
    parser.add_argument("--output", type=Path, default=SNAPSHOT)
    options = parser.parse_args()
    surface = describe_with(options.python, options.extra_path) if options.python else describe_in_new_venv()
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    names = sum(len(entries) for entries in surface.values())
    print(f"wrote {options.output} ({len(surface)} modules, {names} names)")


if __name__ == "__main__":
    main()
