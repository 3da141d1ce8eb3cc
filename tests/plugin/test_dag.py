"""Unit tests of the pure dependency graph (pytest_executor.plan.dag)."""

from __future__ import annotations

import pytest

from pytest_executor.plan.dag import (
    DependencyCycle,
    NameNotFound,
    NodeIndex,
    containers,
    directories,
    escape_param,
    find_cycle,
    find_cycles,
    split_param,
    topological_order,
)

IDS = [
    "tests/test_a.py::test_setup",                   # 0
    "tests/test_a.py::test_param[1]",                # 1
    "tests/test_a.py::test_param[2]",                # 2
    "tests/test_a.py::TestFlow::test_setup",         # 3
    "tests/test_a.py::TestFlow::test_use",           # 4
    "tests/test_b.py::test_setup",                   # 5
    "tests/test_b.py::test_other[a::b]",             # 6
]


def test_directories() -> None:
    assert directories("a/b/test_x.py::test_y") == ["a/b", "a", ""]
    assert directories("test_x.py::test_y") == [""]


def test_split_param_and_containers() -> None:
    assert split_param("a.py::test_x[1-2]") == ("a.py::test_x", "[1-2]")
    assert split_param("a.py::test_x") == ("a.py::test_x", "")
    assert split_param("a.py::test_x[a::b]") == ("a.py::test_x", "[a::b]")
    assert containers("a.py::C::test_x[1]") == ["a.py::C", "a.py"]
    assert containers("a.py::test_x") == ["a.py"]


@pytest.mark.parametrize(
    ("source", "name", "expected"),
    [
        (0, "test_param", [1, 2]),  # bare name: all instances
        (0, "test_param[2]", [2]),  # parametrised id
        (4, "test_setup", [3]),  # closest scope first: the class
        (0, "TestFlow::test_setup", [3]),
        (0, "TestFlow", [3, 4]),  # a class: all its tests
        (5, "tests/test_a.py::test_setup", [0]),  # full node id
        (5, "tests/test_a.py::test_param", [1, 2]),
        (5, "tests/test_a.py", [0, 1, 2, 3, 4]),  # a module
        (0, "test_setup", [0]),  # same module wins over test_b's test_setup
        (5, "test_other[a::b]", [6]),
        (5, "test_a.py::TestFlow::test_use", [4]),  # relative to the test's directory
    ],
)
def test_resolve(source: int, name: str, expected: list[int]) -> None:
    assert NodeIndex(IDS).resolve(source, name) == expected


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(NameNotFound) as info:
        NodeIndex(IDS).resolve(0, "test_parm")
    assert "test_param" in info.value.suggestions
    assert "did you mean 'test_param'" in str(info.value)
    with pytest.raises(NameNotFound, match="matches no test$"):
        NodeIndex(IDS).resolve(0, "zzzzzzzz")


def test_topological_order_keeps_collection_order() -> None:
    assert topological_order(4, {}) == [0, 1, 2, 3]
    # 0 runs after 2: it moves right after 2, the rest keeps its order.
    assert topological_order(4, {0: [2]}) == [1, 2, 0, 3]
    # a chain defined backwards
    assert topological_order(3, {0: [1], 1: [2]}) == [2, 1, 0]
    # duplicated dependencies are harmless
    assert topological_order(2, {1: [0, 0]}) == [0, 1]


def test_cycles_are_reported_with_their_path() -> None:
    deps = {0: [1], 1: [2], 2: [0], 3: []}
    cycle = find_cycle(4, deps)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {0, 1, 2}
    with pytest.raises(DependencyCycle) as info:
        topological_order(4, deps)
    assert "dependency cycle: " in str(info.value)
    assert find_cycle(2, {0: [0]}) == [0, 0]
    assert find_cycle(3, {2: [1], 1: [0]}) is None


def test_suggestions_rank_by_similarity_once_per_test_and_never_the_test_itself() -> None:
    index = NodeIndex(IDS)
    # from test_setup (0): the module's own test_setup and its scopes are never offered
    suggestions = index.suggest(0, "test_setup")
    assert "test_setup" not in suggestions and "tests/test_a.py" not in suggestions
    assert suggestions[0] == "TestFlow::test_setup"
    # every test once, in its shortest spelling that still means it
    many = index.suggest(4, "test_paramm", limit=10)
    assert len(many) == len(set(many))
    assert many[:3] == ["test_param", "test_param[1]", "test_param[2]"]
    # test_setup written in TestFlow means TestFlow::test_setup: the module's is spelled longer
    assert index.suggest(4, "tests/test_a.py::test_setupp")[0] == "test_a.py::test_setup"


def test_non_ascii_parametrize_ids_match_their_escaped_node_ids() -> None:
    index = NodeIndex(["t.py::test_x[caf\\xe9]", "t.py::test_x[plain]", "t.py::test_y"])
    assert escape_param("test_x[café]") == "test_x[caf\\xe9]"
    assert escape_param("test_café") == "test_café"  # names are not escaped, only ids
    assert index.resolve(2, "test_x[café]") == [0]
    assert index.resolve(2, "test_x[caf\\xe9]") == [0]
    with pytest.raises(NameNotFound) as info:
        index.resolve(2, "test_x[cafè]")
    assert info.value.suggestions[0] == "test_x[caf\\xe9]"


def test_every_independent_cycle_is_found() -> None:
    # 0 <-> 1, 2 -> 3 -> 4 -> 2, 5 depends on a cycle without being in one, 6 on itself
    deps = {0: [1], 1: [0], 2: [3], 3: [4], 4: [2], 5: [0], 6: [6]}
    assert find_cycles(7, deps) == [[0, 1, 0], [2, 3, 4, 2], [6, 6]]
    assert find_cycles(3, {1: [0], 2: [1]}) == []


def test_resolve_loads_the_file_of_a_closer_key_before_a_farther_match() -> None:
    index = NodeIndex(["sub/test_a.py::test_x", "test_b.py::test_y"])
    loaded: list[str] = []

    def load(path: str) -> bool:
        loaded.append(path)
        if path == "sub/test_b.py":
            index.add(["sub/test_b.py::test_y"])
            return True
        return False

    # test_b.py::test_y relative to sub/ exists (not collected yet): it wins over the rootdir's
    assert index.nodeids[index.resolve(0, "test_b.py::test_y", load)[0]] == "sub/test_b.py::test_y"
    assert loaded == ["sub/test_a.py", "sub/test_b.py"]
