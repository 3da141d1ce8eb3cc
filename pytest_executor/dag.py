"""Dependency graph of test items: name resolution, cycles, topological order.

Pure logic on node-id strings and integer node numbers — no pytest import —
so it can be unit-tested alone and reused (the xdist scheduler, the workers).

Nodes are numbered ``0..n-1`` in their preferred order (collection order, after
``--lf``/``--ff`` reordering).  ``deps`` maps a node to the nodes it runs *after*.

Typical use::

    index = NodeIndex(nodeids)
    deps = {i: index.resolve(i, name) ...}          # NameNotFound on typos
    order = topological_order(len(nodeids), deps)   # DependencyCycle on cycles
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import final


class NameNotFound(LookupError):
    """An ``after=`` name matches no test."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""
        super().__init__(f"{name!r} matches no test{hint}")


class DependencyCycle(ValueError):
    """The graph has a cycle; ``cycle`` lists its nodes, first == last."""

    def __init__(self, cycle: Sequence[int], names: Sequence[str] | None = None) -> None:
        self.cycle = tuple(cycle)
        shown = [names[i] for i in cycle] if names is not None else [str(i) for i in cycle]
        super().__init__("dependency cycle: " + " -> ".join(shown))


def split_param(nodeid: str) -> tuple[str, str]:
    """Split ``a.py::test_x[1-2]`` into ``("a.py::test_x", "[1-2]")``."""
    # Names of functions and classes cannot contain "[": the first one after
    # the module path opens the parameter id (which may itself contain "::").
    first = nodeid.find("::")
    bracket = nodeid.find("[", first + 2 if first >= 0 else 0)
    if bracket < 0 or not nodeid.endswith("]"):
        return nodeid, ""
    return nodeid[:bracket], nodeid[bracket:]


def containers(nodeid: str) -> list[str]:
    """Enclosing scopes of a node id, innermost first: class(es), then module."""
    base, _ = split_param(nodeid)
    parts = base.split("::")
    return ["::".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]


def directories(nodeid: str) -> list[str]:
    """Directories of a node id's file, innermost first, ending with ``""`` (rootdir)."""
    parts = nodeid.split("::", 1)[0].split("/")[:-1]
    return ["/".join(parts[:n]) for n in range(len(parts), -1, -1)]


@final
class NodeIndex:
    """Resolves ``after=`` names against a list of node ids.

    Accepted names, tried from the closest scope outwards: a bare name
    (``test_x``) or ``Class::name`` relative to the test's class or module, a
    node id relative to the test's directory (``test_b.py::test_x``) or to the
    rootdir (``tests/test_b.py::test_x``), a parametrised id (``test_x[2]``),
    or a class / module (meaning all tests in it).  A name
    without ``[...]`` means all instances of a parametrised test.
    """

    def __init__(self, nodeids: Sequence[str]) -> None:
        self.nodeids = list(nodeids)
        self._groups: dict[str, list[int]] = {}
        for number, nodeid in enumerate(self.nodeids):
            base, param = split_param(nodeid)
            keys = {nodeid, base, *containers(nodeid)}
            for key in keys:
                self._groups.setdefault(key, []).append(number)

    def lookup(self, key: str) -> list[int]:
        """Nodes whose id, unparametrised id or enclosing scope is exactly ``key``."""
        return list(self._groups.get(key, ()))

    def resolve(self, source: int, name: str) -> list[int]:
        """Nodes that ``name``, written on node ``source``, refers to.

        Raises :class:`NameNotFound` with close matches when nothing matches.
        """
        name = name.strip()
        for scope in containers(self.nodeids[source]):
            found = self.lookup(f"{scope}::{name}")
            if found:
                return found
        for directory in directories(self.nodeids[source]):
            found = self.lookup(f"{directory}/{name}" if directory else name)
            if found:
                return found
        raise NameNotFound(name, self.suggest(source, name))

    def suggest(self, source: int, name: str, limit: int = 3) -> list[str]:
        """Names close to ``name``, as they could be written on node ``source``."""
        scopes = containers(self.nodeids[source])
        candidates: set[str] = set()
        for key in self._groups:
            candidates.add(key)
            for scope in scopes:
                if key.startswith(scope + "::"):
                    candidates.add(key[len(scope) + 2 :])
        return difflib.get_close_matches(name, sorted(candidates), n=limit, cutoff=0.6)


def find_cycle(count: int, deps: Mapping[int, Iterable[int]]) -> list[int] | None:
    """Return one cycle as ``[a, b, ..., a]`` (a runs after b ...), or ``None``."""
    white, grey, black = 0, 1, 2
    color = [white] * count
    for root in range(count):
        if color[root] != white:
            continue
        path: list[int] = [root]
        stack = [iter(deps.get(root, ()))]
        color[root] = grey
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                color[path.pop()] = black
            elif color[child] == grey:
                return path[path.index(child) :] + [child]
            elif color[child] == white:
                color[child] = grey
                path.append(child)
                stack.append(iter(deps.get(child, ())))
    return None


def topological_order(count: int, deps: Mapping[int, Iterable[int]]) -> list[int]:
    """Order nodes so each comes after its dependencies, else by node number.

    This is the smallest such order: nodes keep their original order unless a
    dependency forces a dependent later — then the dependent moves right after
    its last dependency.  Raises :class:`DependencyCycle` if there is none.
    """
    waiting = [0] * count
    dependents: list[list[int]] = [[] for _ in range(count)]
    for node in range(count):
        for dep in set(deps.get(node, ())):
            waiting[node] += 1
            dependents[dep].append(node)
    ready = [node for node in range(count) if waiting[node] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for child in dependents[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != count:
        cycle = find_cycle(count, deps)
        raise DependencyCycle(cycle or [])
    return order


def prerequisites(nodes: Iterable[int], deps: Mapping[int, Iterable[int]]) -> set[int]:
    """All nodes that ``nodes`` transitively depend on (some may be in ``nodes``)."""
    seen: set[int] = set()
    todo = [dep for node in nodes for dep in deps.get(node, ())]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(deps.get(node, ()))
    return seen
