"""Shared fixtures for the CadQuery tests.

Tests that build solids need CadQuery (``pip install 'img2prog[cad]'``); they use the
``executor`` fixture, which skips with that reason when CadQuery is absent. Validator, token,
rasteriser and Chamfer tests run without it.
"""

from __future__ import annotations

import pytest

from img2prog.lang.cadquery.sandbox import Executor, Limits, cadquery_available

SKIP_REASON = "CadQuery is not installed (pip install 'img2prog[cad]'); skipping tests that build solids"
needs_cadquery = pytest.mark.skipif(not cadquery_available(), reason=SKIP_REASON)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a heavier CadQuery test (seconds, not milliseconds)")


@pytest.fixture(scope="session")
def executor():
    """One sandbox server per test process (starting one costs ~3-7 s: CadQuery's import)."""
    if not cadquery_available():
        pytest.skip(SKIP_REASON)
    ex = Executor(workers=1, limits=Limits(cpu_s=10, wall_s=30))
    ex.start()
    yield ex
    ex.close()


@pytest.fixture(scope="session")
def unchecked():
    """An executor that runs scripts *without* the static validator: only the OS sandbox holds."""
    if not cadquery_available():
        pytest.skip(SKIP_REASON)
    ex = Executor(workers=1, checked=False, limits=Limits(cpu_s=2, wall_s=4, memory_mb=512))
    ex.start()
    yield ex
    ex.close()
