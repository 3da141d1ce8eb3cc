"""pytest-benchmark's JSON files: writing our records in its format, reading its saved runs.

Its ``compare`` command (``pytest-benchmark compare FILE``) loads what
:func:`to_document` produces; ``--benchmark-autosave`` files go where that
plugin keeps them, ``.benchmarks/<machine id>/NNNN_<tag>.json``, so both tools
find each other's runs.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_executor.benchmark._storage import commit_info, machine_info

FORMAT_VERSION = "5.1.0"
"""The pytest-benchmark version whose file layout we write."""
_OPTION_KEYS = ("min_rounds", "min_time", "max_time", "warmup_rounds", "disable_gc")


def machine_id() -> str:
    """pytest-benchmark's directory name for this machine and interpreter."""
    major_minor = ".".join(platform.python_version_tuple()[:2])
    return f"{platform.system()}-{platform.python_implementation()}-{major_minor}-{platform.architecture()[0]}"


def _bench_entry(record: dict[str, Any]) -> dict[str, Any]:
    """One benchmark in pytest-benchmark's layout, from one of our records."""
    fullname: str = record["name"]
    name = fullname.rpartition("::")[2]
    param = name.partition("[")[2][:-1] or None
    stats = dict(record["stats"])
    stats.setdefault("ops", 0.0)
    stats["outliers"] = f"{stats['stddev_outliers']};{stats['iqr_outliers']}"
    stats["ld15iqr"] = max(stats["min"], stats["q1"] - 1.5 * stats["iqr"])
    stats["hd15iqr"] = min(stats["max"], stats["q3"] + 1.5 * stats["iqr"])
    return {
        "group": record.get("group"),
        "name": name,
        "fullname": fullname,
        "params": None,
        "param": param,
        "extra_info": record.get("extra_info") or {},
        "options": {"timer": "perf_counter", "warmup": False, "disable_gc": bool(record.get("disable_gc"))},
        "stats": stats,
    }


def to_document(records: Sequence[dict[str, Any]], rootpath: Path) -> dict[str, Any]:
    """A whole run in pytest-benchmark's JSON layout."""
    machine = machine_info()
    machine.setdefault("python_compiler", platform.python_compiler())
    machine.setdefault("cpu", {"count": machine.get("cpu_count")})
    commit = commit_info(rootpath) or {"id": "unversioned", "dirty": False}
    commit = {"id": commit.get("id"), "dirty": commit.get("dirty", False), "branch": commit.get("branch"),
              "project": rootpath.name, "time": None, "author_time": None}
    return {
        "machine_info": machine,
        "commit_info": commit,
        "benchmarks": [_bench_entry(record) for record in records],
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": FORMAT_VERSION,
    }


def write_document(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4, default=str) + "\n", encoding="utf-8")
    return path


def storage_dir(rootpath: Path) -> Path:
    """``.benchmarks/<machine id>`` under the rootdir."""
    return rootpath / ".benchmarks" / machine_id()


def autosave_path(rootpath: Path, tag: str) -> Path:
    """The next ``NNNN_<tag>.json`` in the storage directory."""
    directory = storage_dir(rootpath)
    numbers = [int(path.name[:4]) for path in directory.glob("[0-9][0-9][0-9][0-9]_*.json")] if directory.is_dir() else []
    return directory / f"{max(numbers, default=0) + 1:04d}_{tag}.json"


def autosave_tag(rootpath: Path) -> str:
    """pytest-benchmark's autosave name: commit id, time, and a dirty flag."""
    commit = commit_info(rootpath) or {"id": "unversioned", "dirty": False}
    parts = [str(commit.get("id")), datetime.datetime.now().strftime("%Y%m%d_%H%M%S")]
    if commit.get("dirty"):
        parts.append("uncommitted-changes")
    return "_".join(parts)


def find_saved(rootpath: Path, which: str | bool) -> Path:
    """The saved run ``--benchmark-compare`` names: the latest (``True``), ``NNNN``, or a name prefix."""
    directory = storage_dir(rootpath)
    files = sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.json")) if directory.is_dir() else []
    if which is not True:
        files = [path for path in files if path.name.startswith(str(which)) or path.name[:4] == f"{int(which):04d}"] \
            if str(which).isdigit() else [path for path in files if path.name.startswith(str(which))]
    if not files:
        saved = ", ".join(path.name for path in sorted(directory.glob("*.json"))) if directory.is_dir() else ""
        wanted = "a saved run" if which is True else f"saved run {which!r}"
        raise ValueError(f"--benchmark-compare: no {wanted} in {directory} (saved: {saved or 'none'})")
    return files[-1]


def load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    """A pytest-benchmark file as our baseline: records by node id."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {bench["fullname"]: {"name": bench["fullname"], "stats": bench["stats"]} for bench in document["benchmarks"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--benchmark-compare: cannot read {path}: {error}") from None
