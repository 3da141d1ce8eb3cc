"""Describe the public API surface of ``executor.engine`` modules, and compare two descriptions.

Standard library only: ``tools/snapshot_upstream_api.py`` runs this file with
the interpreter of a virtualenv holding executor-engine 0.3.3 (``python
_api_surface.py > snapshot.json``), and ``test_api_surface.py`` imports it to
describe our modules and compare them with that snapshot.

A description maps module name → public name → entry.  An entry has a
``kind`` (``class``, ``function``, ``data``), for callables the parameters
(name, kind, default as text) and whether it is a coroutine function, and for
classes their public members (methods, properties, class and instance
attributes).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import sys
import textwrap
import typing as T

MODULES = [
    "executor.engine",
    "executor.engine.base",
    "executor.engine.core",
    "executor.engine.utils",
    "executor.engine.log",
    "executor.engine.manager",
    "executor.engine.job",
    "executor.engine.job.base",
    "executor.engine.job.utils",
    "executor.engine.job.condition",
    "executor.engine.job.local",
    "executor.engine.job.thread",
    "executor.engine.job.process",
    "executor.engine.job.dask",
    "executor.engine.job.extend",
    "executor.engine.job.extend.subprocess",
    "executor.engine.job.extend.webapp",
    "executor.engine.job.extend.sentinel",
    "executor.engine.job.extend.cron",
    "executor.engine.launcher",
    "executor.engine.launcher.core",
]
"""The modules users import from (upstream's ``middle`` package is the private plumbing of
``redirect_out_err``/``change_dir``; users never import it)."""

INTERNAL: dict[str, str] = {
    "executor.engine.job.utils:run_async_func": "helper of upstream's executors",
    "executor.engine.job.utils:create_generator_wrapper": "helper of upstream's executors",
    "executor.engine.job.utils:SyncGeneratorWrapper": "upstream's generator plumbing; ours: GeneratorProxy",
    "executor.engine.job.utils:AsyncGeneratorWrapper": "upstream's generator plumbing; ours: AsyncGeneratorProxy",
    "executor.engine.job.utils:GeneratorWrapper": "upstream's generator plumbing; ours: GeneratorProxy",
    "executor.engine.job.base:StopResolve": "signal inside upstream's wait_and_run",
    "executor.engine.utils:Checker": "type alias of upstream's attribute checkers",
    "executor.engine.utils:event_loop": "helper upstream does not use",
    "executor.engine.utils:get_event_loop": "helper of the one above",
    "executor.engine.launcher.core:Job_or_ExtJob": "type alias",
}
"""``module:name`` entries left out of the snapshot: implementation details, with the reason."""

_DUNDERS = ("__call__", "__enter__", "__exit__", "__aenter__", "__aexit__", "__iter__", "__next__",
            "__aiter__", "__anext__", "__len__", "__contains__", "__getitem__", "__setitem__",
            "__or__", "__and__")
"""Special methods that are part of what users rely on (``with``, ``len``, ``|``, ...)."""

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _default_text(value: object) -> T.Optional[str]:
    if value is inspect.Parameter.empty:
        return None  # shown as "no default" in gaps
    return _ADDRESS.sub("", repr(value))


def describe_callable(obj: T.Any) -> dict[str, T.Any]:
    """Parameters (name, kind, default text) and coroutine-ness of a callable."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return {"params": None, "coroutine": False}
    params = [[p.name, p.kind.name, _default_text(p.default)] for p in signature.parameters.values()]
    target = obj.__init__ if inspect.isclass(obj) else obj
    return {"params": params, "coroutine": inspect.iscoroutinefunction(target)
            or inspect.isasyncgenfunction(target)}


def _instance_attributes(cls: type) -> set[str]:
    """Names a class (or a base) assigns as ``self.<name> = ...`` in its methods, or declares."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        names.update(getattr(klass, "__annotations__", {}))
        names.update(getattr(klass, "__slots__", ()))
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if (isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name)
                            and leaf.value.id == "self"):
                        names.add(leaf.attr)
    return {n for n in names if not n.startswith("_")}


def describe_class(cls: type) -> dict[str, T.Any]:
    """A class: its constructor and its public members."""
    members: dict[str, T.Any] = {}
    for name in dir(cls):
        if name.startswith("_") and name not in _DUNDERS:
            continue
        if name in _DUNDERS and getattr(cls, name, None) is getattr(object, name, None):
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, property):
            members[name] = {"kind": "property", "settable": raw.fset is not None}
        elif isinstance(raw, (staticmethod, classmethod)) or inspect.isfunction(raw):
            members[name] = {"kind": "method", **describe_callable(getattr(cls, name))}
        elif callable(raw) and not inspect.isclass(raw):
            members[name] = {"kind": "method", **describe_callable(raw)}
        else:
            members[name] = {"kind": "attribute"}
    for name in _instance_attributes(cls):
        members.setdefault(name, {"kind": "attribute"})
    return {"kind": "class", **describe_callable(cls), "members": members}


def _module_names(module: T.Any) -> list[str]:
    """Public names a module defines or, for a package, re-exports."""
    names = set(getattr(module, "__all__", ()))
    source = inspect.getsource(module)
    is_package = hasattr(module, "__path__")
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            names.add(node.target.id)
        elif is_package and isinstance(node, ast.ImportFrom) and node.level > 0:
            names.update(a.asname or a.name for a in node.names)
    return sorted(n for n in names if not n.startswith("_") and f"{module.__name__}:{n}" not in INTERNAL)


def describe_module(name: str) -> dict[str, T.Any]:
    """Every public name of one module."""
    module = importlib.import_module(name)
    entries: dict[str, T.Any] = {}
    for attr in _module_names(module):
        if not hasattr(module, attr):
            continue
        value = getattr(module, attr)
        if inspect.ismodule(value):
            continue
        if inspect.isclass(value):
            entries[attr] = describe_class(value)
        elif inspect.isfunction(value) or inspect.isbuiltin(value):
            entries[attr] = {"kind": "function", **describe_callable(value)}
        else:
            entries[attr] = {"kind": "data", "type": type(value).__name__}
    return entries


def describe(modules: T.Sequence[str] = MODULES) -> dict[str, T.Any]:
    """The surface of every module in ``modules`` (those that cannot be imported are left out)."""
    surface: dict[str, T.Any] = {}
    for name in modules:
        try:
            surface[name] = describe_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return surface


# ------------------------------------------------------------------ comparison
def _params_gaps(where: str, theirs: T.Optional[list], ours: T.Optional[list]) -> list[str]:
    """Gaps of our parameters against theirs: ours may only add trailing parameters with defaults."""
    if theirs is None:
        return []
    if ours is None:
        return [f"{where}: no inspectable signature"]
    gaps: list[str] = []
    ours_by_name = {p[0]: p for p in ours}
    if any(p[1] == "VAR_KEYWORD" for p in theirs) and not any(p[1] == "VAR_KEYWORD" for p in ours):
        gaps.append(f"{where}: takes no **kwargs")
    if any(p[1] == "VAR_POSITIONAL" for p in theirs) and not any(p[1] == "VAR_POSITIONAL" for p in ours):
        gaps.append(f"{where}: takes no *args")
    their_fixed = [p for p in theirs if p[1] not in ("VAR_KEYWORD", "VAR_POSITIONAL")]
    our_fixed = [p for p in ours if p[1] not in ("VAR_KEYWORD", "VAR_POSITIONAL")]
    for index, (name, kind, default) in enumerate(their_fixed):
        if name.startswith("_") and index < len(our_fixed):
            # a placeholder name ("_"): only its position counts, nobody passes it by name
            ours_by_name[name] = our_fixed[index]
            our_fixed[index] = [name, *our_fixed[index][1:]]
        mine = ours_by_name.get(name)
        if mine is None:
            gaps.append(f"{where}: parameter {name!r} missing")
            continue
        positional = kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")
        if positional and (index >= len(our_fixed) or our_fixed[index][0] != name):
            gaps.append(f"{where}: parameter {name!r} is not at position {index}")
        if mine[1] != kind and not (mine[1] == "POSITIONAL_OR_KEYWORD" and kind != "VAR_KEYWORD"):
            gaps.append(f"{where}: parameter {name!r} is {mine[1]}, upstream {kind}")
        if mine[2] != default and default is not None:  # a default where upstream has none only adds
            gaps.append(f"{where}: parameter {name!r} default {_shown(mine[2])}, upstream {_shown(default)}")
    their_names = {p[0] for p in theirs}
    for name, kind, default in our_fixed:
        if name not in their_names and default is None:
            gaps.append(f"{where}: extra parameter {name!r} has no default")
    return gaps


def _shown(default: T.Optional[str]) -> str:
    return "(none)" if default is None else default


def _callable_gaps(where: str, theirs: dict[str, T.Any], ours: dict[str, T.Any]) -> list[str]:
    gaps = _params_gaps(where, theirs.get("params"), ours.get("params"))
    if theirs.get("coroutine") != ours.get("coroutine"):
        expected = "a coroutine function" if theirs.get("coroutine") else "not a coroutine function"
        gaps.append(f"{where}: should be {expected}")
    return gaps


def _member_gaps(where: str, theirs: dict[str, T.Any], ours: dict[str, T.Any]) -> list[str]:
    gaps: list[str] = []
    for name, their in sorted(theirs.items()):
        mine = ours.get(name)
        label = f"{where}.{name}"
        if mine is None:
            gaps.append(f"{label}: missing ({their['kind']})")
        elif their["kind"] == "method":
            if mine["kind"] != "method":
                gaps.append(f"{label}: upstream a method, ours a {mine['kind']}")
            elif name in _DUNDERS:  # called by syntax (len, in, [], with): parameter names do not matter
                gaps += _callable_gaps(label, {**their, "params": None}, mine)
            else:
                gaps += _callable_gaps(label, their, mine)
        elif their["kind"] == "property" and their.get("settable"):
            if mine["kind"] == "property" and not mine.get("settable"):
                gaps.append(f"{label}: property is not settable")
    return gaps


def compare(theirs: dict[str, T.Any], ours: dict[str, T.Any]) -> list[str]:
    """Every way ``ours`` falls short of ``theirs`` (empty: a drop-in)."""
    gaps: list[str] = []
    for module, entries in sorted(theirs.items()):
        mine_module = ours.get(module)
        if mine_module is None:
            gaps.append(f"{module}: module missing")
            continue
        for name, their in sorted(entries.items()):
            where = f"{module}.{name}"
            mine = mine_module.get(name)
            if mine is None:
                gaps.append(f"{where}: missing ({their['kind']})")
                continue
            if their["kind"] in ("class", "function"):
                if mine["kind"] not in ("class", "function"):
                    gaps.append(f"{where}: upstream a {their['kind']}, ours {mine['kind']}")
                    continue
                gaps += _callable_gaps(where, their, mine)
            if their["kind"] == "class":
                if mine["kind"] == "class":
                    gaps += _member_gaps(where, their["members"], mine["members"])
    return gaps


if __name__ == "__main__":
    json.dump(describe(sys.argv[1:] or MODULES), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
