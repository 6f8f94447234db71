"""ascend-sim: build, run and drive the simulated Ascend cluster (host side).

    sim/ascend-sim build                       # images (cached by a hash of their inputs)
    sim/ascend-sim up [--profile a3|a2] [--nodes N] [--name-prefix P] [--no-image]
    sim/ascend-sim status | down | inventory [--write FILE]
    sim/ascend-sim fault NODE ARGS...          # ascend-sim-fault inside the node
    sim/ascend-sim exec NODE CMD...            # a command inside the node

A node is a privileged Docker-in-Docker container running systemd, with fake Ascend devices,
driver files, npu-smi and hccn_tool (see sim/README.md). Nothing is pulled from a registry:
the images are built from a debootstrapped Debian rootfs, and the simulated vLLM-Ascend image
reaches each node's inner engine as a `docker save` tarball (the air-gapped path).
Python 3.11+, standard library only. Needs a Docker engine (tools/docker-engine.sh).
"""

from __future__ import annotations

import argparse
import sys

from ascend_sim_host.build import cmd_build
from ascend_sim_host.cluster import cmd_down, cmd_status, cmd_up
from ascend_sim_host.config import DEFAULT_PREFIX, PROFILES
from ascend_sim_host.inventory import cmd_inventory
from ascend_sim_host.node_exec import cmd_exec, cmd_fault
from ascend_sim_host.shell import SimError

# This module's docstring is the description `ascend-sim --help` prints.


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ascend-sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def with_prefix(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--name-prefix", default=DEFAULT_PREFIX, help="cluster name: network, node prefix (default %(default)s)"
        )
        return sp

    b = sub.add_parser("build", help="build the node and vLLM images (reused while their inputs are unchanged)")
    b.add_argument("--force", action="store_true", help="rebuild even if the images are up to date")
    b.add_argument("--no-cache", action="store_true", help="also bypass Docker's layer cache")
    b.set_defaults(func=cmd_build)

    u = with_prefix(sub.add_parser("up", help="start a cluster of simulated nodes (builds images if needed)"))
    u.add_argument("--profile", choices=PROFILES, default="a3", help="a3: 16 chips/node, a2: 8 (default %(default)s)")
    u.add_argument("--nodes", type=int, default=3, help="number of nodes (default %(default)s)")
    u.add_argument("--subnet", help="IPv4 subnet of the cluster network (default: a free /24 in 172.30.0.0/16)")
    u.add_argument("--no-image", action="store_true", help="do not load the vLLM image into the nodes")
    u.set_defaults(func=cmd_up)

    d = with_prefix(sub.add_parser("down", help="remove the nodes, their volumes and the network"))
    d.set_defaults(func=cmd_down)

    s = with_prefix(sub.add_parser("status", help="show the nodes"))
    s.set_defaults(func=cmd_status)

    i = with_prefix(sub.add_parser("inventory", help="print (or --write) an Ansible inventory for the cluster"))
    i.add_argument("--write", metavar="FILE", help="write it to FILE instead of stdout")
    i.set_defaults(func=cmd_inventory)

    f = with_prefix(sub.add_parser("fault", help="inject/clear a fault: ascend-sim-fault ARGS inside NODE"))
    f.add_argument("node", help="node1, 1 or the container name")
    f.add_argument("args", nargs=argparse.REMAINDER, help="arguments of ascend-sim-fault (--help lists them)")
    f.set_defaults(func=cmd_fault)

    e = with_prefix(sub.add_parser("exec", help="run a command inside a node"))
    e.add_argument("node", help="node1, 1 or the container name")
    e.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    e.set_defaults(func=cmd_exec)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SimError as exc:
        print(f"ascend-sim: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
