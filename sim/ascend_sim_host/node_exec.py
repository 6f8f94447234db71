"""exec and fault: a command inside a node (fault runs the node's ascend-sim-fault)."""

from __future__ import annotations

import argparse
import subprocess
import sys

from ascend_sim_host.cluster import resolve_node
from ascend_sim_host.shell import SimError, docker, ensure_engine


def exec_in_node(prefix: str, node: str, command: list[str]) -> int:
    ensure_engine()
    name = resolve_node(prefix, node)
    if docker("inspect", "--format", "{{.State.Running}}", name, check=False) != "true":
        raise SimError(f"node {name} is not running (sim/ascend-sim status)")
    flags = ["-i"] + (["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else [])
    return subprocess.call(["docker", "exec", *flags, name, *command])


def cmd_exec(args: argparse.Namespace) -> int:
    if not args.command:
        raise SimError("exec: give a command, e.g. `sim/ascend-sim exec node1 npu-smi info`")
    return exec_in_node(args.name_prefix, args.node, args.command)


def cmd_fault(args: argparse.Namespace) -> int:
    return exec_in_node(args.name_prefix, args.node, ["ascend-sim-fault", *args.args])
