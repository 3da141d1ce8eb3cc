"""Turn collected items and their ``job`` markers into a validated run plan.

Runs after collection, in the controller and in worker sessions alike, so that
both end with the same ``session.items`` (``--executor-with-deps`` adds items).
Every problem found is reported at once as one :class:`pytest.UsageError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, final

import pytest

from pytest_executor.plan._collect_more import CollectFailed
from pytest_executor.plan.dag import DependencyCycle, NameNotFound, NodeIndex, find_cycles, topological_order
from pytest_executor.config._state import STATE_KEY
from pytest_executor.config.marker import SPEC_KEY, JobSpec, MarkerError, job_spec
from pytest_executor.config.options import BACKENDS, IN_PROCESS_BACKENDS, find_option, raw_option


@final
@dataclass
class Plan:
    """What to run, on which backend, after what, in which order.

    Nodes are positions in :attr:`items` (the final ``session.items``).
    """

    items: list[pytest.Item]
    specs: list[JobSpec]
    deps: dict[int, list[int]]
    """Node -> nodes it runs after."""
    missing: dict[int, list[str]]
    """Node -> node ids of tests it runs after that are not in the run (not selected)."""
    order: list[int]
    """A topological order keeping ``session.items`` order where it can."""
    pulled_in: list[pytest.Item] = field(default_factory=list)
    """Tests outside the selection added by ``--executor-with-deps``."""
    backends: list[str] = field(default_factory=list)
    """Backend of each node (filled by :func:`choose_backends`)."""


AFTER_KEY: Final = pytest.StashKey[list[str]]()
"""Extra ``after=`` names of an item, added with :func:`add_after`."""


def add_after(item: pytest.Item, names: Iterable[str]) -> None:
    """Make ``item`` run after ``names``, exactly as if its ``job`` marker listed them.

    The one entry point for turning other plugins' markers (pytest-dependency,
    pytest-order...) into dependencies: call it before planning (at collection,
    e.g. in ``pytest_collection_modifyitems``).  The names follow the
    ``after=`` rules (a rootdir-relative node id always works); they are
    resolved, pulled in by ``--executor-with-deps``, skipped when not selected
    and checked for cycles like the marker's own.
    """
    item.stash.setdefault(AFTER_KEY, []).extend(names)


def _error_lines(errors: list[str]) -> pytest.UsageError:
    return pytest.UsageError("invalid job markers:\n  " + "\n  ".join(errors))


CollectFile = Callable[[str], "list[pytest.Item]"]
"""Collects the tests of a rootdir-relative file not (fully) collected yet; see :mod:`._collect_more`."""


def build_plan(
    items: Sequence[pytest.Item],
    deselected: Sequence[pytest.Item],
    *,
    with_deps: bool,
    collect_file: CollectFile | None = None,
) -> Plan:
    """Resolve markers and ``after=`` names of ``items``; order them.

    ``deselected`` tests can be named by ``after=``, and so can tests of files
    the run did not collect: ``collect_file`` is asked for the files a name
    may point into (only those).  With ``with_deps`` the tests that selected
    tests depend on (transitively) are pulled into the run.
    """
    selected_ids = {id(item) for item in items}
    universe = list(items) + [item for item in deselected if id(item) not in selected_ids]
    index = NodeIndex([item.nodeid for item in universe])
    errors: list[str] = []
    specs: dict[int, JobSpec] = {}
    links: dict[int, list[int]] = {}

    def load(relpath: str) -> bool:
        if collect_file is None:
            return False
        try:
            more = collect_file(relpath)
        except CollectFailed as error:
            errors.append(str(error))
            return False
        universe.extend(more)
        index.add(item.nodeid for item in more)
        return bool(more)

    def visit(node: int) -> None:
        try:
            spec = job_spec(universe[node])
        except MarkerError as error:
            specs[node] = JobSpec()
            errors.extend(f"{universe[node].nodeid}: {problem}" for problem in error.problems)
            return
        extra = universe[node].stash.get(AFTER_KEY, [])
        if extra:
            spec = replace(spec, after=tuple(dict.fromkeys([*spec.after, *extra])))
        specs[node] = universe[node].stash[SPEC_KEY] = spec
        found: list[int] = []
        for name in spec.after:
            try:
                found.extend(index.resolve(node, name, load))
            except NameNotFound as error:
                errors.append(f"{universe[node].nodeid}: job(after={name!r}): {error}")
        links[node] = list(dict.fromkeys(found))

    todo = deque(range(len(items)))  # in collection order, so errors are too
    pulled: set[int] = set()
    while todo:
        node = todo.popleft()
        if node in specs:
            continue
        visit(node)
        for dep in links.get(node, ()):
            if dep >= len(items) and with_deps and dep not in pulled:
                pulled.add(dep)
                todo.append(dep)
    run = _merge_pulled(len(items), links, pulled)
    number = {node: position for position, node in enumerate(run)}
    deps = {number[n]: [number[d] for d in links.get(n, ()) if d in number] for n in run}
    missing = {
        number[n]: [universe[d].nodeid for d in links.get(n, ()) if d not in number] for n in run
    }
    run_items = [universe[n] for n in run]
    order: list[int] = []
    try:
        order = topological_order(len(run), deps)
    except DependencyCycle:
        # among the names that did resolve: reported with the other mistakes, all at once
        for cycle in find_cycles(len(run), deps):
            names = " -> ".join(run_items[n].nodeid for n in cycle)
            errors.append(f"dependency cycle in job(after=...): {names} (each runs after the next)")
    if errors:
        raise _error_lines(errors)
    return Plan(
        items=run_items,
        specs=[specs[n] for n in run],
        deps={n: d for n, d in deps.items() if d},
        missing={n: m for n, m in missing.items() if m},
        order=order,
        pulled_in=[universe[n] for n in sorted(pulled)],
    )


def plan_session(session: pytest.Session, deselected: Sequence[pytest.Item], *, with_deps: bool) -> Plan:
    """:func:`build_plan` for a session's items, collecting the files ``after=`` names point into."""
    from pytest_executor.plan._collect_more import FileCollector

    files: list[FileCollector] = []  # built on first use: most runs never look outside the run

    def collect_file(relpath: str) -> list[pytest.Item]:
        if not files:
            files.append(FileCollector(session, [*session.items, *deselected]))
        return files[0].collect(relpath)

    return build_plan(session.items, deselected, with_deps=with_deps, collect_file=collect_file)


def _merge_pulled(selected: int, links: dict[int, list[int]], pulled: set[int]) -> list[int]:
    """Selected nodes in order, each preceded by the pulled-in tests it needs."""
    run: list[int] = []
    placed: set[int] = set()

    def place_prerequisites(node: int) -> None:
        for dep in sorted(links.get(node, ())):
            if dep in pulled and dep not in placed:
                placed.add(dep)
                place_prerequisites(dep)
                run.append(dep)

    for node in range(selected):
        place_prerequisites(node)
        run.append(node)
    return run


def choose_backends(config: pytest.Config, plan: Plan) -> None:
    """Ask ``pytest_executor_select_backend`` for every node; validate the answers."""
    errors = []
    select = _backend_selector(config)
    for item in plan.items:
        backend = select(item=item)
        if backend not in BACKENDS:
            errors.append(
                f"{item.nodeid}: pytest_executor_select_backend returned {backend!r}; "
                f"valid backends: {', '.join(BACKENDS)}"
            )
        plan.backends.append(backend)
    if errors:
        raise _error_lines(errors)
    _refuse_setup_display_on_workers(config, plan)


def default_backend(item: pytest.Item) -> str:
    """The plugin's own answer to ``pytest_executor_select_backend``: ``job(backend=)``, else the option, else local."""
    spec = item.stash.get(SPEC_KEY, None)
    if spec is not None and spec.backend:
        return spec.backend
    backend: str | None = item.config.stash[STATE_KEY].settings["backend"]
    return backend or "local"


def _backend_selector(config: pytest.Config) -> Callable[..., str]:
    """The ``pytest_executor_select_backend`` hook; :func:`default_backend` itself when no other plugin implements it.

    Called once per collected item: on 20,000 items the hook's dispatch alone cost a tenth of a second
    before the first test could start.
    """
    hook = config.hook.pytest_executor_select_backend
    implementations = hook.get_hookimpls()
    if len(implementations) == 1 and implementations[0].function.__module__ == _PLUGIN_MODULE:
        return default_backend
    return hook


_PLUGIN_MODULE: Final = "pytest_executor.plugin"
"""Where the plugin's own ``pytest_executor_select_backend`` is (it calls :func:`default_backend`)."""


def unused_fork_shared(config: pytest.Config, plan: Plan) -> str | None:
    """``--executor-fork-shared`` set while no selected test runs forked: a usage error, or a warning line.

    Given on the command line, the option asks for something this run cannot
    do: an error, before any test runs.  Set in the ini file, it is project
    configuration that stays right when a run selects only tests of other
    backends (``-k``, one file, or a suite that marks only some tests
    ``job(backend="forked")``): an error would break such runs, so the one
    line returned says that it is ignored.
    """
    raw, source = raw_option(config, "fork-shared")
    if raw is None or not plan.items or "forked" in plan.backends:
        return None
    option = find_option("fork-shared")
    used = ", ".join(sorted(set(plan.backends)))
    message = (
        f"{source}={raw} has no effect: no selected test runs on the forked backend (they run on {used}); "
        f'it applies with --executor-backend=forked or to tests marked job(backend="forked")'
    )
    if source == option.cli:
        raise pytest.UsageError(message)
    return f"executor: warning: {message}"


#: pytest options that print fixture setup/teardown as it happens, from the pytest process; each
#: implies the next (pytest sets them so), the first one set is the one the user gave
_SETUP_DISPLAY = {"setupplan": "--setup-plan", "setuponly": "--setup-only", "setupshow": "--setup-show"}


def _refuse_setup_display_on_workers(config: pytest.Config, plan: Plan) -> None:
    """``--setup-show`` and friends print from the process that sets fixtures up: workers would print nothing."""
    asked = next((flag for name, flag in _SETUP_DISPLAY.items() if config.getoption(name, False)), None)
    if not asked:
        return
    remote = [(item.nodeid, backend) for item, backend in zip(plan.items, plan.backends)
              if backend not in IN_PROCESS_BACKENDS]
    if not remote:
        return
    shown = ", ".join(f"{nodeid} ({backend})" for nodeid, backend in remote[:3])
    if len(remote) > 3:
        shown += f" and {len(remote) - 3} more"
    raise pytest.UsageError(
        f"{asked} prints fixture setup from the pytest process, but tests would run on workers, "
        f"{shown}, whose output it cannot show: use --executor-backend=local (or -p no:executor) to inspect fixtures"
    )
