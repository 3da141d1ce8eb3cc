"""Each lazily exporting package: ``__all__``, its lazy table and its type-checking imports name the same things."""

from __future__ import annotations

import ast
import importlib
import inspect
import types

import pytest

PACKAGES = ["executor.engine", "executor.engine.job"]


def type_checking_imports(module: types.ModuleType) -> dict[str, str]:
    """Name → relative module of the ``from .x import Name`` lines under ``if T.TYPE_CHECKING:``."""
    tree = ast.parse(inspect.getsource(module))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom), ast.unparse(stmt)
                for alias in stmt.names:
                    found[alias.asname or alias.name] = "." * stmt.level + (stmt.module or "")
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lazy_table_and_type_checking_imports_agree(name: str) -> None:
    package = importlib.import_module(name)
    table = package._WHERE
    assert list(package.__all__) == list(table)
    assert type_checking_imports(package) == dict(table)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves_to_the_object_its_module_defines(name: str) -> None:
    package = importlib.import_module(name)
    for export, where in package._WHERE.items():
        defining = importlib.import_module(where, name)
        assert getattr(package, export) is getattr(defining, export), export
        assert export in dir(package)
    with pytest.raises(AttributeError, match=f"module '{name}' has no attribute 'NotAName'"):
        package.NotAName  # noqa: B018


def test_load_lazy_exports_puts_every_name_in_its_package() -> None:
    from executor.engine._lazy import load_lazy_exports

    load_lazy_exports()
    for name in PACKAGES:
        package = importlib.import_module(name)
        assert set(package._WHERE) <= set(vars(package)), name
