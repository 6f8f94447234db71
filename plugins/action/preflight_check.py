# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.preflight_check: judge a host's preflight facts, ping its fabric peers, fail once.

The judging is plugins/module_utils/preflight.py (pure, unit-tested); this plugin only finds
the facts (this host's and its fabric peers', registered by ascend.vllm.preflight_facts
earlier in the play), runs ascend.vllm.hccn_info on the host for the pings, and shapes the
result. Documentation: plugins/modules/preflight_check.py.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from ansible.plugins.action import ActionBase

from ansible_collections.ascend.vllm.plugins.module_utils.preflight import (
    Settings,
    collect_problems,
    fabric_devices,
    normalize_records,
    ping_plan,
    summary,
)

ARGUMENT_SPEC: Dict[str, Any] = dict(
    facts_var=dict(type="str", required=True),
    servers=dict(type="list", elements="dict", default=[]),
    ports=dict(type="list", elements="dict", default=[]),
    network=dict(type="dict", default={}),
    min_driver_version=dict(type="str", default="23.0.0"),
    driver_version_file=dict(type="str", default="/usr/local/Ascend/driver/version.info"),
    image_must_exist=dict(type="bool", default=False),
    disk_paths=dict(type="list", elements="str", default=[]),
    min_free_disk_gb=dict(type="float", default=50),
    hccn_tool_path=dict(type="str", default="/usr/local/Ascend/driver/tools/hccn_tool"),
)


def _facts_of(hostvars: Any, host: str, facts_var: str) -> Any:
    # hostvars holds every inventory host; a peer outside the play has no registered facts.
    if hostvars is None or host not in hostvars:
        return None
    return hostvars[host].get(facts_var)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)

        host = task_vars["inventory_hostname"]
        facts = task_vars.get(args["facts_var"])
        if not isinstance(facts, Mapping):
            facts = {"msg": f"no facts in {args['facts_var']} (run ascend.vllm.preflight_facts first)"}
        records = normalize_records(args["servers"], args["ports"], args["network"])

        ping: Optional[Dict[str, Any]] = None
        peer_devices: Dict[str, Optional[List[Dict[str, Any]]]] = {}
        plan: Dict[int, List[str]] = {}
        if records.network is not None:
            hostvars = task_vars.get("hostvars")
            peer_devices = {
                peer: fabric_devices(_facts_of(hostvars, peer, args["facts_var"]))
                for peer in records.network["fabric_peers"]
            }
            plan = ping_plan(host, facts, peer_devices)
            if plan:
                ping = self._execute_module(
                    module_name="ascend.vllm.hccn_info",
                    module_args={
                        "hccn_tool_path": args["hccn_tool_path"],
                        "devices": sorted(plan),
                        "status": False,
                        "ping": {str(device): addresses for device, addresses in plan.items()},
                    },
                    task_vars=task_vars,
                )

        settings = Settings(
            min_driver_version=args["min_driver_version"],
            driver_version_file=args["driver_version_file"],
            image_must_exist=args["image_must_exist"],
            disk_paths=args["disk_paths"],
            min_free_disk_gb=args["min_free_disk_gb"],
        )
        problems = collect_problems(host, records, facts, settings, ping=ping, peer_devices=peer_devices)
        pinged = sum(len(addresses) for addresses in plan.values())
        result.update(changed=False, problems=problems, pinged=pinged)
        if not args["servers"] and not args["ports"]:
            # A host the play deploys to has servers or ports in the plan; none means the
            # caller passed no records (or old option names), and nothing was checked.
            result["warnings"] = [
                f"{host}: no server or port records (preflight_servers, preflight_ports): nothing checked"
            ]
        if ping is not None:
            result["ping"] = ping.get("devices", [])
        if problems:
            result["failed"] = True
            result["msg"] = [f"preflight: {len(problems)} problem(s) on {host}", *problems]
        else:
            result["msg"] = summary(host, records, facts, pinged)
        return result
