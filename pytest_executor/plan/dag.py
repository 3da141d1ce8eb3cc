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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import final


class NameNotFound(LookupError):
    """An ``after=`` name matches no test."""

    def __init__(self, name: str, suggestions: Sequence[str]) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        # quoted, not repr(): the node ids' own backslash escapes show as pytest prints them
        hint = f"; did you mean {', '.join(map(_quote, suggestions))}?" if suggestions else ""
        super().__init__(f"{_quote(name)} matches no test{hint}")


def _quote(name: str) -> str:
    return f"'{name}'"


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


def escape_param(name: str) -> str:
    """``name`` with its ``[...]`` part escaped as pytest escapes parametrize ids.

    pytest writes non-ASCII (and non-printable) characters of ids as
    ``\\uXXXX``-style escapes, so ``test_x[café]`` is collected as
    ``test_x[caf\\xe9]``; function and class names are never escaped.
    """
    base, param = split_param(name)
    if not param or param.isascii() and param.isprintable():
        return name
    return base + param.encode("unicode_escape").decode("ascii")


def candidate_keys(source: str, name: str) -> list[str]:
    """Every key ``name``, written on test ``source``, may mean, closest scope first.

    Scopes of the test (class(es), then module), then node ids relative to its
    directory and each parent up to the rootdir.  A key's file is the part
    before its first ``::`` (see :func:`file_of`).
    """
    spellings = list(dict.fromkeys([name, escape_param(name)]))
    keys = [f"{scope}::{spelled}" for scope in containers(source) for spelled in spellings]
    keys += [
        f"{directory}/{spelled}" if directory else spelled
        for directory in directories(source)
        for spelled in spellings
    ]
    return keys


def file_of(key: str) -> str:
    """The file part (relative to the rootdir) of a node id or key."""
    return key.split("::", 1)[0]


@final
class NodeIndex:
    """Resolves ``after=`` names against a growing list of node ids.

    Accepted names, tried from the closest scope outwards: a bare name
    (``test_x``) or ``Class::name`` relative to the test's class or module, a
    node id relative to the test's directory (``test_b.py::test_x``) or to the
    rootdir (``tests/test_b.py::test_x``), a parametrised id (``test_x[2]``,
    also with its non-ASCII characters unescaped), or a class / module
    (meaning all tests in it).  A name without ``[...]`` means all instances
    of a parametrised test.
    """

    def __init__(self, nodeids: Sequence[str]) -> None:
        self.nodeids: list[str] = []
        self._groups: dict[str, list[int]] = {}
        self.add(nodeids)

    def add(self, nodeids: Iterable[str]) -> None:
        """Append nodes (numbered after the existing ones)."""
        for nodeid in nodeids:
            number = len(self.nodeids)
            self.nodeids.append(nodeid)
            base, _ = split_param(nodeid)
            for key in dict.fromkeys([nodeid, base, *containers(nodeid)]):
                self._groups.setdefault(key, []).append(number)

    def lookup(self, key: str) -> list[int]:
        """Nodes whose id, unparametrised id or enclosing scope is exactly ``key``."""
        return list(self._groups.get(key, ()))

    def resolve(self, source: int, name: str, load: Callable[[str], bool] | None = None) -> list[int]:
        """Nodes that ``name``, written on node ``source``, refers to.

        ``load(file)`` is asked, for each key that matches nothing yet, to add
        the nodes of that file if it was not (fully) collected; it returns True
        when it added some.  So a closer match in an uncollected file wins over
        a farther one that happens to be collected, whatever the selection.
        Raises :class:`NameNotFound` with close matches when nothing matches.
        """
        name = name.strip()
        for key in candidate_keys(self.nodeids[source], name):
            found = self.lookup(key)
            if not found and load is not None and load(file_of(key)):
                found = self.lookup(key)
            if found:
                return found
        raise NameNotFound(name, self.suggest(source, name))

    def suggest(self, source: int, name: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` tests close to ``name``, best first, as written on node ``source``.

        Each test or scope is offered once, in its shortest spelling valid
        from ``source``; the source itself and the scopes containing it
        (which would make it depend on itself) are never offered.
        """
        own = self.nodeids[source]
        mine = {own, split_param(own)[0], *containers(own)}
        matcher = difflib.SequenceMatcher(None, "", escape_param(name.strip()))
        best: dict[tuple[int, ...], tuple[float, str]] = {}
        for key, nodes in self._groups.items():
            if key in mine:
                continue
            spelling = self._shortest_spelling(own, key)
            matcher.set_seq1(spelling)
            if matcher.real_quick_ratio() < _SUGGEST_CUTOFF or matcher.quick_ratio() < _SUGGEST_CUTOFF:
                continue
            ratio = matcher.ratio()
            group = tuple(nodes)
            if group not in best or (-ratio, spelling) < (-best[group][0], best[group][1]):
                best[group] = (ratio, spelling)
        ranked = sorted(best.values(), key=lambda pair: (-pair[0], pair[1]))
        return [spelling for ratio, spelling in ranked if ratio >= _SUGGEST_CUTOFF][:limit]

    def _shortest_spelling(self, source: str, key: str) -> str:
        """The shortest way to write ``key`` in an ``after=`` of ``source`` that still means it."""
        prefixes = [scope + "::" for scope in containers(source)]
        prefixes += [directory + "/" for directory in directories(source) if directory]
        for prefix in prefixes:
            if key.startswith(prefix):
                short = key[len(prefix) :]
                first = next((k for k in candidate_keys(source, short) if k in self._groups), None)
                if first == key:
                    return short
        return key


_SUGGEST_CUTOFF = 0.6
"""Similarity (difflib ratio) below which a name is not worth suggesting."""


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


def find_cycles(count: int, deps: Mapping[int, Iterable[int]]) -> list[list[int]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected group of nodes that has one.

    Independent cycles are all reported, each once, ordered by their smallest
    node; tests that only depend on a cycle are not part of it.
    """
    cycles = []
    for group in _strongly_connected(count, deps):
        members = set(group)
        if len(group) == 1 and group[0] not in set(deps.get(group[0], ())):
            continue
        inside = {node: [d for d in deps.get(node, ()) if d in members] for node in group}
        start = min(group)
        cycle = find_cycle(count, {start: inside[start], **{n: inside[n] for n in group if n != start}})
        if cycle is not None:
            at = cycle.index(min(cycle[:-1]))
            cycles.append(cycle[at:-1] + cycle[:at] + [cycle[at]])
    return sorted(cycles)


def _strongly_connected(count: int, deps: Mapping[int, Iterable[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, without recursion."""
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    groups: list[list[int]] = []
    for root in range(count):
        if root in index:
            continue
        work = [(root, iter(deps.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(deps.get(child, ()))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


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
