"""Saved benchmark runs under ``<rootdir>/.benchmarks/NAME.json``.

A saved run holds every benchmark's record (as produced by the fixture), the
machine it ran on, the Python version and the git commit when the rootdir is in
a git checkout.  Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STORAGE_DIRNAME = ".benchmarks"
FORMAT = "pytest-executor-benchmarks/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StorageError(Exception):
    """A saved run is missing or unreadable; the message says what is available."""


def storage_dir(rootpath: Path) -> Path:
    """Where saved runs live for a rootdir."""
    return rootpath / STORAGE_DIRNAME


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid run name, else raise ``ValueError``."""
    if not _NAME.match(name) or name.endswith(".json"):
        raise ValueError(
            f"invalid benchmark run name {name!r}: use letters, digits, '.', '_' and '-' "
            "(no path separators, no .json suffix)"
        )
    return name


def saved_names(directory: Path) -> list[str]:
    """Names of the runs saved in ``directory``, sorted."""
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob("*.json"))


def machine_info() -> dict[str, Any]:
    """Facts about this machine and interpreter that make timings comparable (or not)."""
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
    }


def commit_info(rootpath: Path) -> dict[str, Any] | None:
    """The git commit (id, branch, dirty flag) of ``rootpath``, or ``None`` outside git."""
    commit = _git(rootpath, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(rootpath, "status", "--porcelain", "--untracked-files=no")
    return {
        "id": commit,
        "branch": _git(rootpath, "rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(status),
    }


def _git(cwd: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def build_run(name: str, records: Sequence[dict[str, Any]], rootpath: Path) -> dict[str, Any]:
    """The document saved for one run."""
    return {
        "format": FORMAT,
        "name": name,
        "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "commit": commit_info(rootpath),
        "benchmarks": list(records),
    }


def save_run(directory: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as ``directory/<name>.json`` atomically; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{check_name(document['name'])}.json"
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, sort_keys=True)
            stream.write("\n")
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def load_run(directory: Path, name: str) -> dict[str, Any]:
    """Read a saved run; a missing or broken file raises :class:`StorageError`."""
    path = directory / f"{check_name(name)}.json"
    if not path.is_file():
        names = saved_names(directory)
        available = ", ".join(names) if names else "none"
        raise StorageError(f"no saved benchmark run {name!r} in {directory} (saved runs: {available})")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise StorageError(f"cannot read saved benchmark run {path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StorageError(f"{path} is not a saved pytest-executor benchmark run (format {FORMAT})")
    problem = document_problem(document)
    if problem:
        raise StorageError(f"{path} is not a valid saved benchmark run: {problem}")
    return document


def document_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with the shape of a saved run (types the comparison relies on), else ``None``."""
    for key in ("machine", "commit"):
        if document.get(key) is not None and not isinstance(document[key], dict):
            return f"{key!r} must be an object, got {type(document[key]).__name__}"
    benchmarks = document.get("benchmarks", [])
    if not isinstance(benchmarks, list):
        return f"'benchmarks' must be a list, got {type(benchmarks).__name__}"
    for number, record in enumerate(benchmarks):
        problem = _record_problem(record)
        if problem:
            return f"benchmarks[{number}]: {problem}"
    return None


def _record_problem(record: object) -> str | None:
    from pytest_executor.benchmark._stats import BenchmarkStats

    if not isinstance(record, dict):
        return f"must be an object, got {type(record).__name__}"
    if not isinstance(record.get("name"), str):
        return "'name' must be a string"
    stats = record.get("stats")
    if not isinstance(stats, dict):
        return f"'stats' must be an object, got {type(stats).__name__}"
    for field in dataclasses.fields(BenchmarkStats):
        value = stats.get(field.name)
        if field.name == "ops" and value is None:
            continue  # infinitely fast: saved as null
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return f"stats {field.name!r} must be a number, got {value!r}"
    return None
