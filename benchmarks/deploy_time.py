#!/usr/bin/env python3
"""How long a deployment takes on the simulator, and where the time goes.

On simulated Atlas 800 A3 nodes brought up fresh (their own Docker engines, no vLLM image
loaded: the deployment loads it from the tarball, as on an air-gapped site), with the
simulator's images already built (`sim/ascend-sim build`):

1. PD 1P1D, first run: `ansible-playbook pd_1p1d.yml -i <the cluster's inventory>` from a
   fresh 3-node cluster to the verified endpoint (plan, preflight, tuning, image, every DP
   rank, the proxy, verification through it);
2. PD 1P1D, re-run: the same command again, which must report changed=0;
3. single node, re-run: `playbooks/single_node.yml` on a 1-node cluster that has been deployed
   once.

Each run is timed from start to exit, with Ansible's profile_roles and profile_tasks callbacks
on, so the report says which roles and tasks the time went to. Writes
benchmarks/results/deploy_time.json and prints a Markdown summary. A measurement, not a test:
nothing fails on a missed target (60 s / 15 s / 10 s).

    .venv/bin/python benchmarks/deploy_time.py [--keep] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
SIM = [sys.executable, str(ROOT / "sim" / "ascend-sim")]
PD_PREFIX = "ascend-bench-pd"
SINGLE_PREFIX = "ascend-bench-single"
TARGETS = {"pd_first_s": 60.0, "pd_rerun_s": 15.0, "single_rerun_s": 10.0}


def sim(*args: str) -> str:
    done = subprocess.run([*SIM, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"ascend-sim {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def cluster(prefix: str, nodes: int, workdir: Path) -> Path:
    """A fresh cluster and its inventory (the simulator's site choices, this cluster's hosts)."""
    sim("down", "--name-prefix", prefix)
    sim("up", "--name-prefix", prefix, "--nodes", str(nodes), "--no-image")
    inventory = workdir / prefix
    inventory.mkdir()
    sim("inventory", "--name-prefix", prefix, "--write", str(inventory / "hosts.yml"))
    (inventory / "group_vars").symlink_to(ROOT / "inventories" / "sim" / "group_vars")
    return inventory


def run(playbook: str, inventory: Path, *extra: str) -> Dict[str, Any]:
    env = {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_roles,ansible.posix.profile_tasks",
        "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "12",
    }
    started = time.perf_counter()
    done = subprocess.run(
        ["ansible-playbook", playbook, "-i", str(inventory), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{playbook} failed after {seconds:.1f} s:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    changed = sum(int(n) for n in re.findall(r"changed=(\d+)", done.stdout))
    return {"seconds": round(seconds, 1), "changed": changed, **profile(done.stdout)}


def profile(output: str) -> Dict[str, List[List[Any]]]:
    """The roles' and the slowest tasks' times from the profile callbacks' recaps."""
    sections = {"roles": [], "tasks": []}
    current = None
    for line in output.splitlines():
        if line.startswith("ROLES RECAP"):
            current = "roles"
        elif line.startswith("TASKS RECAP"):
            current = "tasks"
        elif current and (match := re.match(r"^(.*?)\s-+\s([\d.]+)s$", line.strip())):
            sections[current].append([match.group(1).strip(), float(match.group(2))])
    return sections


def markdown(result: Dict[str, Any]) -> str:
    lines = ["| run | seconds | target | changed |", "|---|---:|---:|---:|"]
    for key, title in (("pd_first", "PD 1P1D, first run"), ("pd_rerun", "PD 1P1D, re-run"),
                       ("single_rerun", "single node, re-run")):  # fmt: skip
        run_ = result[key]
        lines.append(f"| {title} | {run_['seconds']} | <= {TARGETS[key + '_s']:g} | {run_['changed']} |")
    for key in ("pd_first", "pd_rerun"):
        lines += ["", f"Roles, {key.replace('_', ' ')} (profile_roles):", ""]
        lines += [f"- {name}: {seconds} s" for name, seconds in result[key]["roles"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="leave the clusters up")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "deploy_time.json")
    args = parser.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        try:
            pd = cluster(PD_PREFIX, 3, workdir)
            plan_dir = ("-e", f"plan_dir={workdir / 'plan'}")
            result: Dict[str, Any] = {"pd_first": run("pd_1p1d.yml", pd, *plan_dir)}
            result["pd_rerun"] = run("pd_1p1d.yml", pd, *plan_dir)
            single = cluster(SINGLE_PREFIX, 1, workdir)
            scenario = ("-e", "ascend_scenario=a3_single_short", "-e", f"plan_dir={workdir / 'single'}")
            result["single_first"] = run("playbooks/single_node.yml", single, *scenario)
            result["single_rerun"] = run("playbooks/single_node.yml", single, *scenario)
        finally:
            if not args.keep:
                for prefix in (PD_PREFIX, SINGLE_PREFIX):
                    sim("down", "--name-prefix", prefix)
    result.update(
        targets=TARGETS,
        machine={
            "cpus": os.cpu_count(),
            # Other work on the machine slows every run: say how busy it was.
            "load_average_at_start": [round(x, 2) for x in load],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        measured=time.strftime("%Y-%m-%d %H:%M", time.localtime()),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
