"""The fault matrix table: rows judged by the test outcome, grouped by layer, cells escaped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import FaultTable


def _table() -> FaultTable:
    table = FaultTable()
    ok = table.recorder("t::ok")
    ok.describe(case="max-model-len 0", layer="inventory", injected="ascend_max_model_len: 0", expected="exit 2")
    ok.observe("exit 2: ascend_max_model_len must be a positive integer | got 0")
    table.judge("t::ok", True)
    bad = table.recorder("t::bad")
    bad.describe(case="decode rank killed", layer="runtime", injected="docker kill", expected="no failures")
    bad.observe("3 of 200 failed")
    table.judge("t::bad", False)
    table.judge("t::bad", True)  # a passing teardown after a failed call
    table.recorder("t::silent")  # took the fixture, never described: not a row
    return table


def test_rows_are_judged_by_the_test_outcome_and_grouped_by_layer() -> None:
    text = _table().markdown()
    assert "Cases: 2, passed: 1, failed: 1." in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].startswith("| max-model-len 0 | inventory |") and rows[0].endswith("| pass |")
    assert rows[1].startswith("| decode rank killed | runtime |") and rows[1].endswith("| FAIL |")
    assert "got 0" in rows[0] and "\\|" in rows[0]  # a pipe in the message does not break the table


def test_unknown_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="fault layer 'network'"):
        FaultTable().recorder("x").describe(case="c", layer="network", injected="i", expected="e")


def test_written_where_asked_and_nothing_without_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASCEND_FAULTS_DOC", str(tmp_path / "faults.md"))
    assert FaultTable().write() is None
    assert _table().write() == tmp_path / "faults.md"
    assert "| decode rank killed |" in (tmp_path / "faults.md").read_text()
