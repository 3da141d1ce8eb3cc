"""How a worker session is invoked: the controller's command line split and adapted, its temp directory.

A worker session (``process``, ``subprocess``, ``dask``) is an ordinary
pytest session over the controller's options; :func:`split_invocation_args`
tells options from positional file/node arguments, :func:`drop_basetemp`
removes the user's ``--basetemp`` (each worker gets its own under the
controller's, :func:`make_basetemp`), and :func:`python_prefix` starts a
pytest like the controller's where a new interpreter is needed (dask).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest


def _option_takes_value(config: pytest.Config) -> dict[str, bool]:
    """Map each command-line option string to whether it consumes a value."""
    # No public API lists the options: pytest >= 9 keeps the argparse parser in
    # ``optparser``, older versions build it with ``_getparser()``.
    try:
        internal: Any = config._parser
        parser = getattr(internal, "optparser", None) or internal._getparser()
        actions = parser._option_string_actions
    except Exception:
        return {}
    return {name: action.nargs != 0 for name, action in actions.items()}


def split_invocation_args(config: pytest.Config) -> tuple[list[str], list[str]]:
    """Split the controller's command line into (options, positional file/node args)."""
    takes_value = _option_takes_value(config)
    args = [str(arg) for arg in config.invocation_params.args]
    options: list[str] = []
    positionals: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positionals.extend(args[i + 1 :])
            break
        if arg.startswith("--"):
            options.append(arg)
            if "=" not in arg and takes_value.get(arg, False) and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif arg.startswith("-") and len(arg) > 1:
            options.append(arg)
            if len(arg) == 2 and takes_value.get(arg, False) and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        else:
            positionals.append(arg)
        i += 1
    return options, positionals


def drop_basetemp(options: list[str]) -> list[str]:
    """Remove the user's ``--basetemp``: each worker gets its own under the controller's."""
    kept: list[str] = []
    skip = False
    for arg in options:
        if skip:
            skip = False
        elif arg == "--basetemp":
            skip = True
        elif not arg.startswith("--basetemp="):
            kept.append(arg)
    return kept


def make_basetemp(config: pytest.Config) -> tuple[Path, str | None]:
    """The controller's basetemp, under which each worker gets its own; and a directory made for want of one
    (the caller removes it)."""
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        with contextlib.suppress(Exception):
            return Path(factory.getbasetemp()), None
    own = tempfile.mkdtemp(prefix="pytest-executor-")
    return Path(own), own


def python_prefix() -> list[str]:
    """How to start a pytest like the controller's (``python -m pytest`` keeps cwd on sys.path)."""
    main = sys.argv[0] if sys.argv else ""
    if main.endswith(os.path.join("pytest", "__main__.py")):
        return [sys.executable, "-m", "pytest"]
    # Like the ``pytest`` console script: the working directory is not importable.
    boot = "import sys; sys.path.pop(0); import pytest; raise SystemExit(pytest.main())"
    return [sys.executable, "-c", boot]
