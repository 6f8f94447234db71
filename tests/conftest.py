"""Make this checkout importable as ``ansible_collections.ascend.vllm``.

The repository root is the collection root, so modules and tests import their helpers by
FQCN (``ansible_collections.ascend.vllm.plugins.module_utils...``), exactly as they are
imported on a managed node. The symlink tree under ``.build/`` that provides that path is
made by tools/venv.sh (``make venv``); this also makes it for a bare ``pytest`` run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".build" / "collections"


def _link_collection() -> None:
    link = COLLECTIONS / "ansible_collections" / "ascend" / "vllm"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(ROOT, target_is_directory=True)
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    # ansible_collections is a namespace package spread over several folders (the
    # installed `ansible` bundle has one too); forget any earlier import so ours is seen.
    for name in [m for m in sys.modules if m == "ansible_collections" or m.startswith("ansible_collections.")]:
        del sys.modules[name]


_link_collection()

from tests.faults import TABLE, FaultRecorder  # noqa: E402
from tests.sim_cluster import SimCluster, cluster_session  # noqa: E402  (needs the path set up above)


@pytest.fixture(scope="session")
def sim_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimCluster]:
    """A 2-node simulated A3 cluster shared by every test of the session that needs one."""
    yield from cluster_session(tmp_path_factory.mktemp("sim-cluster"))


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> FaultRecorder:
    """One row of the fault matrix (tests/faults.py): describe the case, observe, assert."""
    return TABLE.recorder(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or report.failed:
        TABLE.judge(item.nodeid, report.passed)


def pytest_sessionfinish(session: pytest.Session) -> None:
    written = TABLE.write()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if written is not None and reporter is not None:
        reporter.write_line(f"fault matrix written to {written}")
