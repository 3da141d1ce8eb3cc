"""An ordered integration flow: each step runs after the one it needs.

The steps are defined out of order on purpose: ``after=`` moves them into a
working order.  They share in-memory state, so they stay in the pytest
process (``backend="local"``) whatever ``--executor-backend`` says.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.job(backend="local")


@pytest.mark.job(after="TestAccount::test_login")
def test_place_order(store: dict[str, object]) -> None:
    assert store["session"] == "alice-token"
    store["order"] = {"item": "book", "qty": 2}


def test_create_database(store: dict[str, object]) -> None:
    store.clear()
    store["db"] = "ready"


class TestAccount:
    """Account steps; ``test_login`` needs ``test_register`` of the same class."""

    @pytest.mark.job(after="test_register")
    def test_login(self, store: dict[str, object]) -> None:
        assert store["user"] == "alice"
        store["session"] = "alice-token"

    @pytest.mark.job(after="test_create_database")
    def test_register(self, store: dict[str, object]) -> None:
        assert store["db"] == "ready"
        store["user"] = "alice"


@pytest.mark.job(after="test_place_order")
def test_invoice(store: dict[str, object]) -> None:
    order = store["order"]
    assert isinstance(order, dict) and order["qty"] == 2


@pytest.mark.job(after=["test_invoice", "test_reports.py::test_daily_report"])
def test_close_day(store: dict[str, object]) -> None:
    assert "order" in store
