"""Fixtures of the simulator's own unit tests: ``ascend_sim`` importable, a state per test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

SIM = Path(__file__).resolve().parents[2] / "sim"
if str(SIM) not in sys.path:
    sys.path.insert(0, str(SIM))

from ascend_sim import state as st  # noqa: E402


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty state directory, also exported as ASCEND_SIM_STATE_DIR."""
    directory = tmp_path / "ascend-sim"
    monkeypatch.setenv("ASCEND_SIM_STATE_DIR", str(directory))
    monkeypatch.setenv("ASCEND_SIM_VERSION_INFO", str(tmp_path / "driver" / "version.info"))
    yield directory


@pytest.fixture
def a3(state_dir: Path) -> Path:
    st.init_state("a3", directory=state_dir)
    return state_dir


@pytest.fixture
def a2(state_dir: Path) -> Path:
    st.init_state("a2", directory=state_dir)
    return state_dir


@pytest.fixture
def mutate(state_dir: Path) -> Callable[[Callable[[dict], None]], dict]:
    def apply(fn: Callable[[dict], None]) -> dict:
        return st.update_state(fn, state_dir)

    return apply
