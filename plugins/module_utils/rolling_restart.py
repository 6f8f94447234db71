# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which instances a rolling restart takes, in which order, and when it must refuse.

The unit is an instance, a whole DP group: under expert parallelism its ranks run every forward
pass together, so one rank down stalls the group and a rank restarted alone cannot rejoin it.
Groups go one at a time, in plan order. While one is out, the proxy serves with the others of
its role: zero downtime needs at least two instances of every role being rolled. With one, the
roll refuses unless downtime is accepted.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

ROLES = ("prefill", "decode")
ACCEPT = "rolling_restart_accept_downtime=true"


def roll_order(
    plan: Mapping[str, Any], role: str = "", instances: Sequence[str] = (), accept_downtime: bool = False
) -> Dict[str, Any]:
    """``{"order": [instance names], "refusal": "" or why not}`` (nothing is restarted on a refusal)."""
    if plan.get("mode") != "pd":
        return _refuse("a rolling restart needs a PD deployment: it takes instances out of the PD proxy")
    known = [i for i in plan["instances"] if i["role"] in ROLES]
    if role and role not in ROLES:
        return _refuse(f"rolling_restart_role {role!r}: choose prefill or decode")
    unknown = [name for name in instances if name not in {i["name"] for i in known}]
    if unknown:
        names = ", ".join(i["name"] for i in known)
        return _refuse(f"rolling_restart_instances: {', '.join(unknown)} not in the plan (it has {names})")
    chosen = [i for i in known if (not role or i["role"] == role) and (not instances or i["name"] in instances)]
    if not chosen:
        return _refuse(f"nothing to restart: no {role} instance among {', '.join(instances)}")
    problems: List[str] = []
    for each in ROLES:
        group = [i["name"] for i in known if i["role"] == each]
        if any(i["role"] == each for i in chosen) and len(group) < 2 and not accept_downtime:
            problems.append(
                f"{each} has one instance ({', '.join(group)}): while it restarts no {each} instance serves "
                f"and every request fails. Zero downtime needs at least two {each} instances (add hosts to "
                f"group {each}); to restart it anyway with downtime, run with -e {ACCEPT}"
            )
    if problems:
        return _refuse("; ".join(problems))
    return {"order": [i["name"] for i in chosen], "refusal": ""}


def _refuse(message: str) -> Dict[str, Any]:
    return {"order": [], "refusal": message}
