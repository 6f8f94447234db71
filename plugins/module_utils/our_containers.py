# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Our containers on a host, and those the plan no longer has (scale in, teardown).

Every container the collection runs carries the label ``ascend.vllm.role``: the role
``vllm_server`` sets it to the server's role (``prefill``, ``decode``, ``single``), the role
``pd_proxy`` to ``proxy``. Containers without it are not ours and are never touched.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

LABEL = "ascend.vllm.role"


def _name(container: Mapping[str, Any]) -> str:
    names = container.get("Names") or [container.get("Name", "")]
    return str(names[0]).lstrip("/")


def unplanned(containers: List[Mapping[str, Any]], host_record: Optional[Mapping[str, Any]]) -> List[Dict[str, str]]:
    """Our containers (``docker_host_info`` with ``verbose_output``) that ``host_record`` (the plan's
    ``hosts.<name>``, or None for a host the plan no longer has) does not run, in name order."""
    record = host_record or {}
    planned = {s["container"]["name"] for s in record.get("servers") or []}
    if isinstance(record.get("proxy"), Mapping):
        planned.add(record["proxy"]["name"])
    found = []
    for container in containers:
        labels = container.get("Labels") or {}
        if LABEL not in labels or _name(container) in planned:
            continue
        what = labels.get("ascend.vllm.instance") or labels[LABEL]
        found.append(
            {"name": _name(container), "role": labels[LABEL], "what": what, "state": container.get("State", "")}
        )
    return sorted(found, key=lambda c: c["name"])
