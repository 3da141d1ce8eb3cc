"""An ordered integration flow: each step runs after the one it needs.

The steps are defined out of order on purpose: ``after=`` moves them into a
working order.  They share state through the ``store`` fixture (a file), so
each step may run on any worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the fixture's type, for readers and checkers only
    from conftest import Store


@pytest.mark.job(after="TestAccount::test_login")
def test_place_order(store: Store) -> None:
    assert store["session"] == "alice-token"
    store["order"] = {"item": "book", "qty": 2}


def test_create_database(store: Store) -> None:
    store.clear()
    store["db"] = "ready"


class TestAccount:
    """Account steps; ``test_login`` needs ``test_register`` of the same class."""

    @pytest.mark.job(after="test_register")
    def test_login(self, store: Store) -> None:
        assert store["user"] == "alice"
        store["session"] = "alice-token"

    @pytest.mark.job(after="test_create_database")
    def test_register(self, store: Store) -> None:
        assert store["db"] == "ready"
        store["user"] = "alice"


@pytest.mark.job(after="test_place_order")
def test_invoice(store: Store) -> None:
    order = store["order"]
    assert isinstance(order, dict) and order["qty"] == 2


@pytest.mark.job(after=["test_invoice", "test_reports.py::test_daily_report"])
def test_close_day(store: Store) -> None:
    assert "order" in store
