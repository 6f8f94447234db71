# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ascend.vllm.plan: the deployment plan, computed on the controller from the inventory
and the shipped catalogue, shown once, written to plan.json, returned for publishing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.19+: an action can set facts itself, as set_fact does
    from ansible.plugins.action import VariableLayer
except ImportError:
    VariableLayer = None
from ansible.utils.display import Display

from ansible_collections.ascend.vllm.plugins.module_utils.plan import (
    PREFIX,
    build_plan,
    check_shape,
    inventory_hosts,
    serve_commands,
)
from ansible_collections.ascend.vllm.plugins.plugin_utils.catalogue import load_catalogue
from ansible_collections.ascend.vllm.plugins.plugin_utils.inventory_yaml import yaml_errors

display = Display()

ARGUMENT_SPEC: Dict[str, Any] = {
    "dir": {"type": "str", "default": "plan-out"},
    "require_mode": {"type": "str", "choices": ["single", "pd"]},
    "require_shape": {"type": "dict"},
    "purpose": {"type": "str", "default": "this playbook"},
    "show": {"type": "bool", "default": True},
}


def inventory_vars(hostvars: Any, hosts: List[str]) -> Dict[str, Dict[str, Any]]:
    """The ``ascend_*`` variables of ``hosts``, templated one by one.

    Reading only these keys (``hostvars[host]`` templates lazily, per key) keeps an unrelated
    variable that cannot be templated on the controller from breaking the plan.
    """
    out = {}
    for name in hosts:
        if name in hostvars:
            variables = hostvars[name]
            out[name] = {key: variables[key] for key in variables if str(key).startswith(PREFIX)}
    return out


def summary(plan: Dict[str, Any], files: Optional[Path]) -> List[str]:
    shape = " + ".join(f"{count} {role}" for role, count in plan["shape"].items())
    mode = "single node" if plan["mode"] == "single" else f"PD, {shape} instance(s)"
    recipe = plan["recipe"]
    lines = [
        f"Scenario {plan['scenario']} ({mode}), model {plan['model']} served as {plan['served_model_name']}",
        f"Recipe {recipe['name']} (vLLM-Ascend {recipe['vllm_ascend']}), chosen by {recipe['why']}",
        f"Image {plan['image']}",
        f"Endpoint(s) {', '.join(plan['endpoints'])}",
    ]
    if files:
        lines.append(f"Written: {files / 'plan.json'}, {files / 'serve-commands.txt'}")
    return lines


def _write(path: Path, text: str, check_mode: bool) -> bool:
    """Write ``text`` unless it is there already; True when the file changes (would change)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    if not check_mode:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return True


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp: Any = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        groups = task_vars.get("groups") or {}
        hostvars = task_vars.get("hostvars") or {}
        try:
            variables = inventory_vars(hostvars, inventory_hosts(groups))
        except Exception as exc:  # Ansible raises its own errors for a vars file it cannot load
            sources = [*(task_vars.get("ansible_inventory_sources") or []), task_vars.get("playbook_dir") or ""]
            broken = yaml_errors(s for s in sources if s)
            if not broken:
                raise
            raise AnsibleActionFail(
                "an inventory vars file is not valid YAML; nothing was changed on any host:\n"
                + "\n".join(f"  - {problem}" for problem in broken)
            ) from exc
        outcome = build_plan(variables, groups, load_catalogue())
        warnings = [issue["text"] for issue in outcome["warnings"]]
        errors = [issue["text"] for issue in outcome["errors"]]
        plan = outcome["plan"]
        if plan is not None:
            errors += check_shape(plan, args["require_mode"], args["require_shape"], args["purpose"])
        if warnings:
            result["warnings"] = warnings
        if errors:
            result.update(failed=True, errors=errors)
            result["msg"] = (
                f"The inventory has {len(errors)} problem(s); nothing was changed on any host:\n"
                + "\n".join(f"  - {e}" for e in errors)
            )
            return result

        files = None
        changed = False
        if args["dir"]:
            base = Path(os.environ.get("PWD") or os.getcwd())
            files = Path(os.path.normpath(base / os.path.expanduser(args["dir"])))
            text = json.dumps(plan, indent=2, sort_keys=False) + "\n"
            try:
                changed = _write(files / "plan.json", text, self._task.check_mode)
                changed = _write(files / "serve-commands.txt", serve_commands(plan), self._task.check_mode) or changed
            except OSError as exc:
                raise AnsibleActionFail(f"cannot write the plan files in {files}: {to_text(exc)}") from exc
        if args["show"]:
            display.display("\n".join([*summary(plan, files), "", *outcome["table"]]))
        if VariableLayer is not None:
            # An ephemeral fact of every host of the play (run_once), as set_fact sets them.
            self.register_host_variables({"ascend_plan": plan}, VariableLayer.EPHEMERAL_FACT)
            result.update(changed=changed, published=True, table=outcome["table"])
        else:
            result.update(changed=changed, published=False, plan=plan, table=outcome["table"])
        return result
