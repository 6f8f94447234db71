"""Run a playbook from a Molecule testinfra verifier and read its outcome.

The verifiers (molecule/*/tests) also check what a role does when it must fail or when it
runs in --check; testinfra cannot run a role, so they run the scenario's own playbook with
the JSON callback against the scenario's inventory and look at each task's result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_playbook(playbook: Path, *args: str) -> tuple[int, dict]:
    """Run `playbook` against Molecule's inventory; return (rc, the JSON callback's report)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    # profile_tasks (set by some scenarios) writes plain text to stdout too.
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(playbook),
        *args,
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=playbook.parent)
    try:
        report = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook output is not JSON (rc {res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.returncode, report


def task_results(report: dict, host: str) -> dict[str, dict]:
    """Task name -> that host's result, for every task of every play (the last one wins)."""
    out = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            if host in task["hosts"]:
                out[task["task"]["name"]] = task["hosts"][host]
    return out


def changed_tasks(report: dict, host: str) -> list[str]:
    return [name for name, result in task_results(report, host).items() if result.get("changed")]


def failure_text(report: dict, host: str) -> str:
    """The messages of every task that failed on `host`, one per line (a list msg is joined)."""
    lines = []
    for result in task_results(report, host).values():
        if result.get("failed"):
            msg = result.get("msg", "")
            lines.extend(msg if isinstance(msg, list) else [str(msg)])
    return "\n".join(lines)
