"""A parametrised group, and a test that needs all of its instances."""

from __future__ import annotations

import math

import pytest


@pytest.mark.parametrize("n", [0, 1, 5, 10, 20])
def test_factorial_grows(n: int) -> None:
    assert math.factorial(n + 1) > math.factorial(n) or n == 0


@pytest.mark.parametrize(("a", "b"), [(12, 18), (7, 5), (100, 75)])
def test_gcd_divides(a: int, b: int) -> None:
    g = math.gcd(a, b)
    assert a % g == 0 and b % g == 0


@pytest.mark.job(after="test_factorial_grows")
def test_after_every_factorial() -> None:
    assert math.factorial(5) == 120


@pytest.mark.job(after="test_gcd_divides[7-5]")
def test_after_one_instance() -> None:
    assert math.gcd(7, 5) == 1
