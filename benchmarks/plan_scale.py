#!/usr/bin/env python3
"""How long the plan takes for a large xPyD site: 64 Atlas 800 A3 hosts (1024 chips).

The site: 16 prefill hosts and 48 decode hosts, the guide's table 9.1 "Short Seq High
Throughput" topology (prefill DP8 x TP2 per host, decode DP32 x TP1 over two hosts) scaled out
to 16 prefill and 24 decode instances: 896 servers, one proxy. Measured, on the same inventory:

- ``build_plan`` in process (the pure computation; best of several runs), with a cProfile of
  one run;
- ``ansible-playbook playbooks/plan.yml`` from start to exit (what an operator waits for:
  Ansible's start-up, reading the inventory, the plan action, writing plan.json), median of
  several runs;
- plan.json's size.

    .venv/bin/python benchmarks/plan_scale.py [--runs N] [--out benchmarks/results/plan_scale.json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "collections"))

from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan  # noqa: E402
from ansible_collections.ascend.vllm.plugins.plugin_utils.catalogue import load_catalogue  # noqa: E402

PREFILL_HOSTS = 16
DECODE_HOSTS = 48
SCENARIO = "a3_pd_short_throughput"
CHOICES = {
    "ascend_hardware": "a3",
    "ascend_scenario": SCENARIO,
    "ascend_recipe": "v0.21",  # table 9.1's rows are the guide's v0.21 recipe
    "ascend_model": "minimax-m2.7-w8a8",
    "ascend_nic_name": "enp189s0f0",
    "ascend_scenario_overrides": {"prefill": {"instances": PREFILL_HOSTS}, "decode": {"instances": DECODE_HOSTS // 2}},
}


def site() -> tuple[Dict[str, Dict[str, Any]], Dict[str, List[str]]]:
    """(hostvars, groups) of the 64-host site."""
    names = [f"a3-{i:02d}" for i in range(1, PREFILL_HOSTS + DECODE_HOSTS + 1)]
    hostvars = {
        name: {"ansible_host": f"10.0.{i // 250}.{i % 250 + 1}", "ascend_local_ip": f"10.0.{i // 250}.{i % 250 + 1}",
               **CHOICES}
        for i, name in enumerate(names)
    }  # fmt: skip
    groups = {"prefill": names[:PREFILL_HOSTS], "decode": names[PREFILL_HOSTS:], "proxy": names[:1], "single": []}
    return hostvars, groups


def write_inventory(directory: Path) -> Path:
    hostvars, groups = site()
    inventory = {
        "all": {
            "vars": CHOICES,
            "hosts": {h: {k: v for k, v in values.items() if k not in CHOICES} for h, values in hostvars.items()},
            "children": {g: {"hosts": dict.fromkeys(members)} for g, members in groups.items() if members},
        }
    }
    path = directory / "hosts.json"
    path.write_text(json.dumps(inventory))
    return path


def time_build(runs: int) -> Dict[str, Any]:
    hostvars, groups = site()
    catalogue = load_catalogue()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = build_plan(hostvars, groups, catalogue)
        times.append(time.perf_counter() - started)
    assert result["errors"] == [], result["errors"][:3]
    servers = sum(len(h["servers"]) for h in result["plan"]["hosts"].values())
    profiler = cProfile.Profile()
    profiler.runcall(build_plan, hostvars, groups, catalogue)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(12)
    return {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3), "servers": servers,
            "profile": text.getvalue()}  # fmt: skip


def time_playbook(runs: int) -> Dict[str, Any]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
    times, size = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        inventory = write_inventory(Path(tmp))
        for run in range(runs):
            out = Path(tmp) / f"out{run}"
            argv = ["ansible-playbook", "playbooks/plan.yml", "-i", str(inventory), "-e", f"plan_dir={out}"]
            started = time.perf_counter()
            done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise SystemExit(f"plan.yml failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            size = (out / "plan.json").stat().st_size
    return {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times],
            "plan_json_bytes": size}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "plan_scale.json")
    args = parser.parse_args()
    build = time_build(max(args.runs, 3))
    playbook = time_playbook(args.runs)
    result = {
        "site": f"{PREFILL_HOSTS + DECODE_HOSTS} A3 hosts ({PREFILL_HOSTS} prefill, {DECODE_HOSTS} decode), {SCENARIO} "
        f"with {PREFILL_HOSTS} prefill and {DECODE_HOSTS // 2} decode instances",
        "servers": build["servers"],
        "build_plan_best_s": build["best_s"],
        "build_plan_median_s": build["median_s"],
        "plan_playbook_median_s": playbook["median_s"],
        "plan_playbook_runs_s": playbook["runs_s"],
        "plan_json_bytes": playbook["plan_json_bytes"],
        "target_s": 5.0,
        "measured": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print("\nbuild_plan profile (cumulative):\n" + build["profile"])


if __name__ == "__main__":
    main()
