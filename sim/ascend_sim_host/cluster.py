"""The cluster: up, down, status -- its network, its node containers, their readiness."""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import time
from typing import Any

from ascend_sim_host.build import build
from ascend_sim_host.config import (
    DEFAULT_PREFIX,
    DEFAULT_SUBNET,
    LABEL_CLUSTER,
    LABEL_INDEX,
    LABEL_PROFILE,
    NODE_IMAGE,
    NODE_IP_OFFSET,
    READY_TIMEOUT,
    SUBNET_POOL,
    VLLM_IMAGE,
    VLLM_TARBALL,
)
from ascend_sim_host.inputs import image_id
from ascend_sim_host.shell import SimError, Timer, docker, ensure_engine, parallel, run, say


def node_name(prefix: str, index: int) -> str:
    return f"{prefix}-node{index}"


def cluster_nodes(prefix: str) -> list[dict[str, Any]]:
    """The node containers of a cluster (any state), sorted by index."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL_CLUSTER}={prefix}").split()
    if not ids:
        return []
    nodes = []
    for info in json.loads(docker("inspect", *ids)):
        labels = info["Config"]["Labels"] or {}
        networks = info["NetworkSettings"]["Networks"] or {}
        ip = (networks.get(prefix) or {}).get("IPAddress") or ""
        nodes.append(
            {
                "name": info["Name"].lstrip("/"),
                "index": int(labels.get(LABEL_INDEX, "0")),
                "profile": labels.get(LABEL_PROFILE, "?"),
                "running": bool(info["State"]["Running"]),
                "status": info["State"]["Status"],
                "ip": ip,
                "image": info["Config"]["Image"],
            }
        )
    return sorted(nodes, key=lambda n: n["index"])


def resolve_node(prefix: str, node: str) -> str:
    if node.isdigit():
        return node_name(prefix, int(node))
    if node.startswith("node") and node[4:].isdigit():
        return f"{prefix}-{node}"
    return node


def used_networks() -> list[ipaddress.IPv4Network]:
    used = []
    ids = docker("network", "ls", "-q").split()
    if ids:
        for net in json.loads(docker("network", "inspect", *ids)):
            for cfg in (net.get("IPAM") or {}).get("Config") or []:
                try:
                    used.append(ipaddress.ip_network(cfg.get("Subnet", ""), strict=False))
                except ValueError:
                    continue
    res = run(["ip", "-4", "-o", "route", "show"], check=False)
    for line in res.stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if "/" in first:
            used.append(ipaddress.ip_network(first, strict=False))
    return used


def pick_subnet(requested: str | None, prefix: str) -> ipaddress.IPv4Network:
    if requested:
        return ipaddress.IPv4Network(requested)
    used = [n for n in used_networks() if n.version == 4]
    if prefix == DEFAULT_PREFIX:
        taken = [str(u) for u in used if u.overlaps(DEFAULT_SUBNET)]
        if taken:
            raise SimError(
                f"the default cluster's subnet {DEFAULT_SUBNET} (inventories/sim names its addresses) overlaps "
                f"the Docker network(s) {', '.join(taken)}: remove them, or pass --subnet and use "
                "`sim/ascend-sim inventory` for that cluster"
            )
        return DEFAULT_SUBNET
    for subnet in SUBNET_POOL.subnets(new_prefix=24):
        if subnet != DEFAULT_SUBNET and not any(subnet.overlaps(u) for u in used):
            return subnet
    raise SimError(f"no free /24 left in {SUBNET_POOL}: pass --subnet")


def node_state(name: str) -> tuple[str, str]:
    """(systemd state, inner docker version or '') of a running node."""
    res = run(["docker", "exec", name, "systemctl", "is-system-running"], check=False)
    systemd = res.stdout.strip() or "unknown"
    res = run(["docker", "exec", name, "docker", "version", "--format", "{{.Server.Version}}"], check=False)
    return systemd, res.stdout.strip() if res.returncode == 0 else ""


def wait_ready(name: str) -> float:
    t0 = time.monotonic()
    deadline = t0 + READY_TIMEOUT
    systemd = ""
    while time.monotonic() < deadline:
        running = docker("inspect", "--format", "{{.State.Running}}", name, check=False)
        if running != "true":
            logs = run(["docker", "logs", "--tail", "30", name], check=False)
            raise SimError(f"node {name} stopped while booting:\n{(logs.stdout + logs.stderr).strip()}")
        systemd, engine = node_state(name)
        if systemd in ("running", "degraded") and engine:
            if systemd == "degraded":
                failed = run(["docker", "exec", name, "systemctl", "--failed", "--no-legend", "--plain"], check=False)
                say(f"  warning: {name}: systemd degraded: {failed.stdout.strip()}")
            return time.monotonic() - t0
        time.sleep(0.3)
    raise SimError(f"node {name} not ready after {READY_TIMEOUT:.0f} s (systemd: {systemd})")


def load_image(name: str) -> str:
    wanted = image_id(VLLM_IMAGE)
    res = run(["docker", "exec", name, "docker", "image", "inspect", "--format", "{{.Id}}", VLLM_IMAGE], check=False)
    if res.returncode == 0 and res.stdout.strip() == wanted:
        return "present"
    t = Timer()
    with open(VLLM_TARBALL, "rb") as fh:
        res = subprocess.run(
            ["docker", "exec", "-i", name, "docker", "load", "-q"], stdin=fh, capture_output=True, text=True
        )
    if res.returncode != 0:
        raise SimError(f"docker load into {name} failed: {res.stderr.strip()}")
    return f"loaded in {t}"


def cmd_up(args: argparse.Namespace) -> int:
    prefix, count, profile = args.name_prefix, args.nodes, args.profile
    if count < 1:
        raise SimError("--nodes must be >= 1")
    ensure_engine()
    total = Timer()
    build(quiet=True)
    existing = cluster_nodes(prefix)
    if existing:
        same = len(existing) == count and all(n["profile"] == profile for n in existing)
        if not same:
            desc = f"{len(existing)} x {existing[0]['profile'].upper()}"
            hint = "" if prefix == DEFAULT_PREFIX else f" --name-prefix {prefix}"
            raise SimError(f"cluster '{prefix}' already exists ({desc}): run `sim/ascend-sim down{hint}` first")
        stale = [n["name"] for n in existing if n["image"] != NODE_IMAGE]
        stopped = [n["name"] for n in existing if not n["running"]]
        if stopped:
            say(f"up: starting stopped nodes {', '.join(stopped)}")
            docker("start", *stopped)
        else:
            say(f"up: cluster '{prefix}' is already up")
        names = [n["name"] for n in existing]
        if stale:
            say(f"  note: {', '.join(stale)} run an older node image: `down` then `up` to use the new one")
    else:
        names = create_cluster(prefix, count, profile, args.subnet)

    def bring_up(name: str) -> str:
        ready = wait_ready(name)
        return f"{name} ready in {ready:.1f} s" + ("" if args.no_image else f", image {load_image(name)}")

    # Each node loads the vLLM image as soon as its own engine answers.
    for line in parallel(bring_up, names):
        say(f"  {line}")
    say(f"up: {len(names)} x {profile.upper()} node(s) ready in {total}")
    print_status(prefix)
    return 0


def create_cluster(prefix: str, count: int, profile: str, subnet_arg: str | None) -> list[str]:
    label = f"{LABEL_CLUSTER}={prefix}"
    for attempt in range(5):
        if run(["docker", "network", "inspect", prefix], check=False).returncode == 0:
            break
        subnet = pick_subnet(subnet_arg, prefix)
        if count + NODE_IP_OFFSET + 1 >= subnet.num_addresses:
            raise SimError(f"subnet {subnet} too small for {count} nodes")
        gateway = str(subnet.network_address + 1)
        cmd = ["docker", "network", "create", "--subnet", str(subnet), "--gateway", gateway, "--label", label, prefix]
        res = run(cmd, check=False)
        if res.returncode == 0:
            break
        if subnet_arg or "overlap" not in res.stderr or attempt == 4:  # else: raced another `up` to it
            raise SimError(f"docker network create {prefix} ({subnet}) failed: {res.stderr.strip()}")
    net = json.loads(docker("network", "inspect", prefix))[0]
    subnet = ipaddress.IPv4Network(net["IPAM"]["Config"][0]["Subnet"])
    ips = {i: str(subnet.network_address + NODE_IP_OFFSET + i) for i in range(1, count + 1)}
    names = [node_name(prefix, i) for i in range(1, count + 1)]
    add_hosts = [f"--add-host={node_name(prefix, i)}:{ip}" for i, ip in ips.items()]
    say(f"up: {count} x {profile.upper()} node(s) on network {prefix} ({subnet})")
    for i, name in enumerate(names, start=1):
        volume = f"{name}-docker"
        docker("volume", "create", "--label", label, volume)
        cmd = ["docker", "run", "-d", "--name", name, "--hostname", name, "--privileged"]
        cmd += ["--tmpfs", "/run", "--tmpfs", "/run/lock", "--stop-signal", "SIGRTMIN+3"]
        cmd += ["--network", prefix, "--ip", ips[i], "-v", f"{volume}:/var/lib/docker"]
        cmd += ["-e", f"ASCEND_SIM_PROFILE={profile}", "-e", f"ASCEND_SIM_NODE_INDEX={i}"]
        cmd += ["--label", label, "--label", f"{LABEL_INDEX}={i}", "--label", f"{LABEL_PROFILE}={profile}"]
        cmd += [h for h in add_hosts if not h.startswith(f"--add-host={name}:")]
        run([*cmd, NODE_IMAGE])
    return names


def cmd_down(args: argparse.Namespace) -> int:
    ensure_engine()
    prefix = args.name_prefix
    t = Timer()
    ids = docker("ps", "-aq", "--filter", f"label={LABEL_CLUSTER}={prefix}").split()
    if ids:
        docker("rm", "-f", "-v", *ids)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={LABEL_CLUSTER}={prefix}").split()
    if volumes:
        docker("volume", "rm", "-f", *volumes)
    networks = docker("network", "ls", "-q", "--filter", f"label={LABEL_CLUSTER}={prefix}").split()
    if networks:
        docker("network", "rm", *networks)
    if not (ids or volumes or networks):
        say(f"down: no cluster '{prefix}'")
    else:
        say(f"down: removed {len(ids)} node(s), {len(volumes)} volume(s), {len(networks)} network(s) in {t}")
    return 0


def print_status(prefix: str) -> list[dict[str, Any]]:
    nodes = cluster_nodes(prefix)
    if not nodes:
        say(f"no cluster '{prefix}' (sim/ascend-sim up)")
        return nodes

    def probe(node: dict[str, Any]) -> tuple[str, str, str, str]:
        if not node["running"]:
            return node["status"], "-", "-", "-"
        systemd, engine = node_state(node["name"])
        if not engine:
            return systemd, "down", "-", "-"
        res = run(["docker", "exec", node["name"], "docker", "image", "inspect", VLLM_IMAGE], check=False)
        ps = run(["docker", "exec", node["name"], "docker", "ps", "-q"], check=False)
        return systemd, engine, "yes" if res.returncode == 0 else "no", str(len(ps.stdout.split()))

    rows = [("NODE", "IP", "PROFILE", "SYSTEMD", "DOCKER", "VLLM IMAGE", "CONTAINERS")]
    for node, (systemd, engine, img, ctrs) in zip(nodes, parallel(probe, nodes)):
        rows.append((node["name"], node["ip"], node["profile"].upper(), systemd, engine, img, ctrs))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return nodes


def cmd_status(args: argparse.Namespace) -> int:
    ensure_engine()
    return 0 if print_status(args.name_prefix) else 1
