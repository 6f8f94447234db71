# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run independent host queries at the same time, results in a fixed order.

The Ascend tools answer one device per call (``hccn_tool -i N ...``), ``npu-smi info`` takes
a second or more on a 16-chip A3, and a ping waits for its replies: one after the other, the
checks of a node add up to many seconds. They wait on the tool, not on the CPU, so threads
let them overlap.

Workers must not call ``module.fail_json`` / ``exit_json``: those print the module's one JSON
result and exit, which from a worker thread would interleave with the other workers' output
and only end that thread. A worker raises instead, and the caller turns the exception into
the module's answer once every worker is done.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Enough for every device of an Atlas 800 A3 (16) and the few other queries of a host at once;
# a bound so that a long device list does not start hundreds of processes together.
MAX_WORKERS = 24


def map_concurrently(fn: Callable[[T], R], items: Sequence[T], max_workers: int = MAX_WORKERS) -> List[R]:
    """``[fn(item) for item in items]``, with the calls running in threads.

    Results come in the order of ``items``. Every call runs to its end; then the exception of
    the first failed item (in the order of ``items``) is raised, so which error is reported
    does not depend on timing.
    """
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items)))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    # Leaving the `with` waited for every call.
    return [future.result() for future in futures]
