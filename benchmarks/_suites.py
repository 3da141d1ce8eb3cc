"""Generated test suites shared by the plugin benchmarks.

* :func:`write_trivial_suite` — ``tests`` tests that do nothing, 100 per module;
* :func:`write_realistic_suite` — about 3,000 tests in 30 modules shaped like a
  real project (parametrised functions and classes, fixtures of every scope,
  output, warnings, ``tmp_path``, a few failures, skips and xfails), fully
  deterministic so every runner must report the same outcome counts;
* :func:`write_probe` — a ``conftest.py`` probe that records, per process, the
  time of the first ``pytest_runtest_logreport`` and the process's own CPU at
  ``pytest_unconfigure`` (the benchmark reads the controller's file by pid).
"""

from __future__ import annotations

from pathlib import Path

PROBE_ENV = "BENCH_PROBE_DIR"

_PROBE = '''
"""Benchmark probe: first report time and own CPU, one JSON file per process."""
import json
import os
import resource
import time

_first = []


def pytest_runtest_logreport(report):
    if not _first:
        _first.append(time.time())


def pytest_unconfigure(config):
    where = os.environ.get("{env}")
    if not where:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    record = {{"first_report": _first[0] if _first else None,
              "cpu": usage.ru_utime + usage.ru_stime}}
    with open(os.path.join(where, f"probe-{{os.getpid()}}.json"), "w") as out:
        json.dump(record, out)
'''


def write_probe(suite: Path) -> None:
    """Install the timing probe as the suite's root ``conftest.py`` (appending to one)."""
    conftest = suite / "conftest.py"
    existing = conftest.read_text() if conftest.exists() else ""
    conftest.write_text(existing + _PROBE.format(env=PROBE_ENV))


def write_trivial_suite(directory: Path, tests: int, per_module: int = 100) -> None:
    """``tests`` tests that do nothing, ``per_module`` per module, and a ``pytest.ini``."""
    directory.mkdir(parents=True, exist_ok=True)
    for module in range(0, tests, per_module):
        body = "".join(
            f"def test_nothing_{n}():\n    pass\n\n\n" for n in range(min(per_module, tests - module))
        )
        (directory / f"test_trivial_{module // per_module:04d}.py").write_text(body)
    (directory / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


_REALISTIC_CONFTEST = '''
import pytest


@pytest.fixture(scope="session")
def settings():
    return {"base": 7, "names": ["alpha", "beta", "gamma"]}


@pytest.fixture
def record(settings):
    return dict(settings, calls=[])
'''

# Per module: 40 + 30 + 8 + 5 + 5 + 8 + 1 + 1 + 1 (+1 failure in 3 modules) = 99 or 100 tests.
_REALISTIC_MODULE = '''
import json
import warnings

import pytest

MODULE = {index}


@pytest.fixture(scope="module")
def table(settings):
    return {{n: n * settings["base"] + MODULE for n in range(64)}}


@pytest.fixture
def words(settings):
    return list(settings["names"])


@pytest.mark.parametrize("n", range(40))
def test_table_lookup(table, n):
    assert table[n] - MODULE == n * 7


class TestWords:
    @pytest.mark.parametrize("k", range(6))
    def test_join(self, words, k):
        assert "-".join(words * k).count("-") == max(0, 3 * k - 1)

    @pytest.mark.parametrize("k", range(6))
    def test_upper(self, words, k):
        assert [w.upper() for w in words][k % 3].isupper()

    @pytest.mark.parametrize("k", range(6))
    def test_record(self, record, k):
        record["calls"].append(k)
        assert record["calls"] == [k]

    @pytest.mark.parametrize("text", ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"])
    def test_len(self, text):
        assert len(text) == ord(text[0]) - ord("a") + 1

    @pytest.mark.parametrize("k", range(6))
    def test_sorted(self, k):
        assert sorted(range(k, 0, -1)) == list(range(1, k + 1))


@pytest.mark.parametrize("n", range(8))
def test_prints(n):
    print(f"module {{MODULE}} line {{n}}")
    assert n >= 0


@pytest.mark.parametrize("n", range(5))
def test_warns(n):
    warnings.warn(f"module {{MODULE}} warning {{n}}", UserWarning)
    assert n < 5


@pytest.mark.parametrize("n", range(5))
def test_tmp_files(tmp_path, n):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({{"n": n}}))
    assert json.loads(path.read_text()) == {{"n": n}}


@pytest.mark.parametrize("a,b", [(i, i + 1) for i in range(8)])
def test_pairs(a, b):
    assert b - a == 1


def test_skipped():
    pytest.skip("not on this platform")


@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert MODULE < 0


def test_settings_shared(settings):
    assert settings["base"] == 7
'''

_REALISTIC_FAILURE = '''

def test_regression():
    expected = {{"module": MODULE, "ok": True}}
    assert expected == {{"module": MODULE, "ok": False}}
'''


def write_realistic_suite(directory: Path, modules: int = 30) -> None:
    """About 100 tests per module over ``modules`` modules; modules 0, 10, 20 hold one failure."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "conftest.py").write_text(_REALISTIC_CONFTEST)
    for index in range(modules):
        body = _REALISTIC_MODULE.format(index=index)
        if index % 10 == 0:
            body += _REALISTIC_FAILURE.format()
        (directory / f"test_project_{index:02d}.py").write_text(body)
    (directory / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
