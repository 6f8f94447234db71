# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault matrix, inputs: bad inventories and bad host states, each caught before any host changes.

Every case runs the real deployment playbook (``playbooks/pd_1p1d.yml``) against the session's
2-node simulated A3 cluster (tests/conftest.py ``sim_cluster``: node1 prefill and proxy, node2
decode) and asserts the exit code, that the failure names the host and the variable / chip /
port / device at fault, and that nothing changed on the nodes.

"Nothing changed" is measured on the nodes, not inferred: before a run the test takes a
snapshot of each node (its inner Docker engine's containers and images, the sysctls host
tuning writes, and every file under /etc, /usr/local, /root, /opt, /var/tmp and /tmp newer than
a marker touched just before) and compares it with the same snapshot after. No task but the
plan (which writes plan.json on the controller) may report ``changed``.

Inventory cases (the plan refuses them, on the controller) run several playbooks at a time to
keep the suite's cost down: one batch, one snapshot before and one after it. Host-state cases
inject faults into the nodes with the simulator's ``ascend-sim-fault`` (or a file moved away),
run, assert, and restore the nodes. Preflight reads whole nodes, so those runs go one at a
time; faults on different resources (a file, a chip, a port, a device) share a run, each case
asserting its own problem, and the matrix row says which cases shared it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import pytest
import yaml

from tests.sim_cluster import SimCluster, node

pytestmark = [pytest.mark.fault, pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = "playbooks/pd_1p1d.yml"
MARKER = "/run/ascend-fault-marker"
HCCN_TOOL = "/usr/local/Ascend/driver/tools/hccn_tool"
NODE1_IP = "<node1's ascend_local_ip>"
# What a deployment would touch on a node. Ansible's own scratch space is left out: ~/.ansible,
# and the module payload directories it makes and removes in /tmp (only /tmp's own mtime shows
# them; a file left in /tmp still counts).
WATCHED = "/etc /usr/local /root /opt /var/tmp"
SNAPSHOT = (
    "docker ps -a --no-trunc --format '{{.ID}} {{.Names}} {{.Image}} {{.State}} {{.CreatedAt}}' | sort; "
    "echo --; docker images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | sort; "
    "echo --; sysctl -n vm.swappiness kernel.numa_balancing kernel.sched_migration_cost_ns 2>&1; "
    f"echo --; find {WATCHED} -xdev -newer {MARKER} -not -path '/root/.ansible*' 2>/dev/null | sort; "
    f"find /tmp -xdev -newer {MARKER} -not -type d 2>/dev/null | sort"
)


def snapshot(cluster: SimCluster) -> Dict[str, str]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(cluster.nodes)) as pool:
        outputs = pool.map(lambda name: node(name, "sh", "-c", SNAPSHOT).stdout, cluster.nodes)
    return dict(zip(cluster.nodes, outputs))


def mark(cluster: SimCluster) -> None:
    for name in cluster.nodes:
        node(name, "touch", MARKER)


def ansible(playbook: str, inventory: Path, *extra: str) -> Tuple[subprocess.CompletedProcess, float]:
    """The playbook as an operator runs it; plan.json goes beside the inventory, not into the checkout."""
    env = {
        "PATH": f"{ROOT / '.venv' / 'bin'}:/usr/bin:/bin",
        "ANSIBLE_NOCOLOR": "1",
        # One line of JSON per failed result: its problems are read exactly, not unwrapped.
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "HOME": str(Path.home()),
        "ASCEND_SIM_TAG": os.environ.get("ASCEND_SIM_TAG", ""),
    }
    started = time.monotonic()
    plan_dir = f"plan_dir={inventory.parent / (inventory.name + '-plan')}"
    argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), playbook, "-i", str(inventory), "-e", plan_dir, *extra]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    return result, time.monotonic() - started


def changed_tasks(output: str) -> List[str]:
    """The tasks that reported ``changed`` on some host. The plan task may: it writes plan.json
    on the controller (into the run's plan_dir), never on a host."""
    changed, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6 : line.index("]")]
        elif line.startswith("changed: [") and task not in changed:
            changed.append(task)
    return changed


def host_changes(output: str) -> List[str]:
    return [task for task in changed_tasks(output) if not task.startswith("ascend.vllm.plan :")]


def recap(output: str) -> Dict[str, Dict[str, int]]:
    rows = re.findall(r"^(\S+)\s+:\s+(ok=.*)$", output, re.M)
    return {host: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)} for host, counts in rows}


def failures(output: str) -> List[Dict[str, Any]]:
    """Every ``fatal: [host]: FAILED! => {...}`` result (the run uses the JSON result format)."""
    return [json.loads(m) for m in re.findall(r"^fatal: \[\S+\]: FAILED! => (\{.*\})$", output, re.M)]


def problems(output: str) -> List[str]:
    """The problem lines of every failed task: the plan's ``errors``, preflight's ``msg`` list,
    or the ``  - ...`` lines of a text message."""
    found: List[str] = []
    for result in failures(output):
        msg = result.get("msg")
        if result.get("errors"):
            found += result["errors"]
        elif isinstance(msg, list):
            found += [str(line) for line in msg]
        elif isinstance(msg, str):
            found += re.findall(r"^\s+- (.*)$", msg, re.M) or [msg]
    return found


def first_error(output: str) -> str:
    found = problems(output)
    if found:
        return found[0]
    lines = output.strip().splitlines()
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------------------------
# Inventory cases


@dataclass
class InventoryCase:
    id: str
    case: str
    injected: str
    # Where it fails: the node (index 1-based) and what the message must name.
    host: int
    names: Tuple[str, ...]
    extra_vars: Optional[Dict[str, Any]] = None
    host_vars: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    raw_group_vars: Optional[str] = None  # a group_vars/decode.yml text (YAML errors)


def _ip(cluster: SimCluster, index: int) -> str:
    hosts = yaml.safe_load((cluster.inventory / "hosts.yml").read_text())["all"]["hosts"]
    return str(hosts[cluster.nodes[index - 1]]["ascend_local_ip"])


EXTRA = "ascend_serve_args_extra"
OVERRIDES = "ascend_scenario_overrides"
INVENTORY_CASES = [
    InventoryCase(
        "misspelled-variable",
        "misspelled ascend_* variable",
        "host var ascend_modle: minimax-m2.7-w8a8",
        1,
        ("ascend_modle", "did you mean ascend_model?"),
        host_vars={1: {"ascend_modle": "minimax-m2.7-w8a8"}},
    ),
    InventoryCase(
        "unknown-flag",
        "unknown vLLM flag",
        "ascend_serve_args_extra: {max-modle-len: 65536}",
        1,
        (EXTRA, "--max-modle-len is not an option of vllm serve", "did you mean --max-model-len?"),
        {EXTRA: {"max-modle-len": 65536}},
    ),
    InventoryCase(
        "max-model-len-0",
        "max-model-len 0",
        "ascend_serve_args_extra: {max-model-len: 0}",
        1,
        (EXTRA, "--max-model-len", "at least 1"),
        {EXTRA: {"max-model-len": 0}},
    ),
    InventoryCase(
        "int-zero-not-unset",
        "the integer 0 is a value, not 'unset'",
        "host var ascend_serve_args_extra: {max-num-seqs: 0} on the decode host",
        2,
        (EXTRA, "--max-num-seqs", "at least 1"),
        host_vars={2: {EXTRA: {"max-num-seqs": 0}}},
    ),
    InventoryCase(
        "negative-dp",
        "negative number",
        "ascend_scenario_overrides: {decode: {dp: -2}}",
        2,
        ("ascend_scenario_overrides.decode.dp", "below the minimum 1"),
        {OVERRIDES: {"decode": {"dp": -2}}},
    ),
    InventoryCase(
        "infinite-number",
        "infinite number",
        "host var (YAML .inf) gpu-memory-utilization: .inf",
        1,
        (EXTRA, "--gpu-memory-utilization", "not a finite number"),
        host_vars={1: {EXTRA: {"gpu-memory-utilization": float("inf")}}},
    ),
    InventoryCase(
        "nan-number",
        "NaN number",
        "host var (YAML .nan) max-num-batched-tokens: .nan on the decode host",
        2,
        (EXTRA, "--max-num-batched-tokens", "not a finite number"),
        host_vars={2: {EXTRA: {"max-num-batched-tokens": float("nan")}}},
    ),
    InventoryCase(
        "switch-with-value",
        "a vLLM switch given a value",
        "ascend_serve_args_extra: {enforce-eager: sometimes}",
        1,
        (EXTRA, "--enforce-eager", "given to a switch"),
        {EXTRA: {"enforce-eager": "sometimes"}},
    ),
    InventoryCase(
        "flag-choice",
        "a value outside a vLLM flag's choices",
        "ascend_serve_args_extra: {dtype: float8}",
        1,
        (EXTRA, "--dtype", "is not one of auto"),
        {EXTRA: {"dtype": "float8"}},
    ),
    InventoryCase(
        "quantization-typo",
        "a quantization method vLLM does not know",
        "ascend_serve_args_extra: {quantization: asend}",
        1,
        (EXTRA, "--quantization", "did you mean ascend?"),
        {EXTRA: {"quantization": "asend"}},
    ),
    InventoryCase(
        "duplicate-ip",
        "two hosts with one IP",
        "node2's ascend_local_ip = node1's",
        2,
        ("ascend_local_ip", "also the ascend_local_ip of"),
        host_vars={2: {"ascend_local_ip": NODE1_IP}},
    ),
    InventoryCase(
        "ipv6-local-ip",
        "IPv6 address where URLs and HCCL need IPv4",
        "host var ascend_local_ip: fd00::12 on the decode host",
        2,
        ("ascend_local_ip", "IPv6"),
        host_vars={2: {"ascend_local_ip": "fd00::12"}},
    ),
    InventoryCase(
        "nic-name-malformed",
        "NIC name that cannot exist",
        "ascend_nic_name: eth0/1",
        1,
        ("ascend_nic_name", "cannot be a network interface name"),
        {"ascend_nic_name": "eth0/1"},
    ),
    InventoryCase(
        "placeholder-image-tag",
        "placeholder image tag",
        "ascend_vllm_image: ascend-sim/vllm-ascend:CHANGE-ME",
        1,
        ("ascend_vllm_image", "looks like a placeholder"),
        {"ascend_vllm_image": "ascend-sim/vllm-ascend:CHANGE-ME"},
    ),
    InventoryCase(
        "chip-range-huge",
        "pathological chip range (fails at once, linear time)",
        "ascend_chips: 0-99999999999999999999",
        1,
        ("ascend_chips", "chip 99999999999999999999 does not exist"),
        {"ascend_chips": "0-99999999999999999999"},
    ),
    InventoryCase(
        "chip-listed-twice",
        "a chip listed twice",
        "ascend_chips: 0-7,4",
        1,
        ("ascend_chips", "[4] are listed more than once"),
        {"ascend_chips": "0-7,4"},
    ),
    InventoryCase(
        "relative-models-dir",
        "relative model directory",
        "ascend_models_dir: models",
        1,
        ("ascend_models_dir", "not an absolute path"),
        {"ascend_models_dir": "models"},
    ),
    InventoryCase(
        "relative-draft-model",
        "relative speculative draft model",
        "speculative-config model: eagle-head",
        1,
        (EXTRA, "--speculative-config model 'eagle-head' is not an absolute path"),
        {EXTRA: {"speculative-config": {"method": "eagle3", "num_speculative_tokens": 1, "model": "eagle-head"}}},
    ),
    InventoryCase(
        "malformed-shm-size",
        "malformed size",
        "ascend_container_shm_size: lots",
        1,
        ("ascend_container_shm_size", "is not a size"),
        {"ascend_container_shm_size": "lots"},
    ),
    InventoryCase(
        "relative-hccn-conf",
        "relative hccn.conf path",
        "ascend_hccn_conf: etc/hccn.conf",
        1,
        ("ascend_hccn_conf", "not an absolute path"),
        {"ascend_hccn_conf": "etc/hccn.conf"},
    ),
    InventoryCase(
        "kv-port-mooncake",
        "PD: kv port inside Mooncake's random port range",
        "ascend_decode_kv_port: 20500",
        2,
        ("ascend_decode_kv_port", "20500-20507", "the ports Mooncake picks at random"),
        {"ascend_decode_kv_port": 20500},
    ),
    InventoryCase(
        "kv-transfer-config-tp",
        "PD: kv_transfer_config tp/dp not matching the launch flags",
        "ascend_serve_args_extra: {kv-transfer-config: {... prefill: {tp_size: 4, dp_size: 4}}}",
        1,
        (EXTRA, "--kv-transfer-config is written by the plan"),
        {
            EXTRA: {
                "kv-transfer-config": {
                    "kv_connector": "MooncakeConnectorV1",
                    "kv_connector_extra_config": {"prefill": {"tp_size": 4, "dp_size": 4}},
                }
            }
        },
    ),
    InventoryCase(
        "speculative-p-vs-d",
        "PD: speculative decoding on prefill, off on decode",
        "ascend_scenario_overrides: {decode: {serve_args: {speculative-config: false}}}",
        2,
        ("group decode", "ascend_scenario_overrides.decode.serve_args", "--speculative-config on decode (off)"),
        {OVERRIDES: {"decode": {"serve_args": {"speculative-config": False}}}},
    ),
    InventoryCase(
        "port-overlap",
        "PD: an HTTP port inside the kv port range",
        "ascend_decode_port: 19004",
        2,
        ("ascend_decode_kv_port", "overlap HTTP port of decode0 DP rank 0 (19004, ascend_decode_port)"),
        {"ascend_decode_port": 19004},
    ),
    InventoryCase(
        "tp-does-not-fit",
        "PD: a topology that does not fit the chips",
        "ascend_scenario_overrides: {decode: {tp: 32}}",
        2,
        ("group decode", "ascend_scenarios.a3_pd_1p1d_200k.decode.dp", "do not fit"),
        {OVERRIDES: {"decode": {"tp": 32}}},
    ),
    InventoryCase(
        "yaml-error",
        "YAML error in group_vars (file and line)",
        "group_vars/decode.yml with an unclosed flow mapping",
        2,
        ("group_vars/decode.yml:4:1", "flow mapping that starts on line 3"),
        raw_group_vars="---\nascend_decode_port: 7100\nascend_serve_args_extra: {max-num-seqs: 32\n",
    ),
]


def _inventory(cluster: SimCluster, case: InventoryCase, root: Path) -> Path:
    """The cluster's inventory with the case's host vars (or group_vars file) added."""
    site = root / case.id
    site.mkdir()
    (site / "hosts.yml").symlink_to(cluster.inventory / "hosts.yml")
    if case.raw_group_vars is None:
        (site / "group_vars").symlink_to(cluster.inventory / "group_vars")
    else:
        (site / "group_vars").mkdir()
        (site / "group_vars" / "all.yml").symlink_to(cluster.inventory / "group_vars" / "all.yml")
        (site / "group_vars" / "decode.yml").write_text(case.raw_group_vars)
    if case.host_vars:
        (site / "host_vars").mkdir()
        for index, values in case.host_vars.items():
            values = {k: (_ip(cluster, 1) if v == NODE1_IP else v) for k, v in values.items()}
            (site / "host_vars" / f"{cluster.nodes[index - 1]}.yml").write_text(yaml.safe_dump(values))
    return site


@pytest.fixture(scope="module")
def inventory_runs(sim_cluster: SimCluster, tmp_path_factory: pytest.TempPathFactory):
    """Every inventory case run once against the cluster, three at a time; the nodes' snapshots
    before and after the whole batch."""
    root = tmp_path_factory.mktemp("fault-inventories")
    mark(sim_cluster)
    before = snapshot(sim_cluster)

    def run(case: InventoryCase):
        extra = ["-e", _json(case.extra_vars)] if case.extra_vars else []
        return ansible(PLAYBOOK, _inventory(sim_cluster, case, root), *extra)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip([c.id for c in INVENTORY_CASES], pool.map(run, INVENTORY_CASES)))
    print(f"\n{len(INVENTORY_CASES)} inventory cases in {time.monotonic() - started:.1f} s")
    return results, before, snapshot(sim_cluster)


def _json(values: Mapping[str, Any]) -> str:
    return json.dumps(values)


@pytest.mark.parametrize("case", INVENTORY_CASES, ids=lambda c: c.id)
def test_bad_inventory_is_refused_before_any_host_changes(case: InventoryCase, inventory_runs, sim_cluster, fault):
    results, before, after = inventory_runs
    host = sim_cluster.nodes[case.host - 1]
    fault.describe(
        case=case.case,
        layer="inventory",
        injected=case.injected,
        expected=(
            f"exit 2 before any host task, naming the file and line ({case.names[0]})"
            if case.raw_group_vars is not None
            else f"exit 2 before any host task, naming node{case.host} and {case.names[0]}"
        ),
    )
    result, seconds = results[case.id]
    output = result.stdout + result.stderr
    # A YAML error is reported by file, which sits in the host's inventory.
    named = [line for line in problems(output) if line.startswith((host, "group ", "/"))]
    observed = named[0] if named else first_error(output)
    fault.observe(f"exit {result.returncode} in {seconds:.0f} s: {observed.replace(sim_cluster.prefix + '-', '')}")
    assert result.returncode == 2, output
    assert any(host in line or line.startswith(("group ", "/")) for line in named), output
    assert any(all(name in line for name in case.names) for line in named), (case.names, named)
    assert "nothing was changed on any host" in output
    # The plan is the first task; no role touched a host.
    assert "TASK [ascend.vllm.preflight" not in output and "TASK [ascend.vllm.host_tuning" not in output
    assert all(counts["changed"] == 0 for counts in recap(output).values()), output
    assert after == before, "a node changed"


# ---------------------------------------------------------------------------------------------
# Host-state cases


@dataclass
class HostCase:
    id: str
    case: str
    injected: str
    host: int
    names: Tuple[str, ...]
    inject: Callable[[SimCluster], None]
    restore: Callable[[SimCluster], None]
    # Cases of one group are injected together and share one run (each still asserts its own
    # problem): faults on different resources, so none hides another, at a third of the cost.
    group: str = ""
    layer: str = "host state"
    extra_vars: Optional[Dict[str, Any]] = None


def _fault(index: int, *args: str) -> Callable[[SimCluster], None]:
    def run(cluster: SimCluster) -> None:
        node(cluster.nodes[index - 1], "ascend-sim-fault", *args)

    return run


def _sh(index: int, script: str) -> Callable[[SimCluster], None]:
    def run(cluster: SimCluster) -> None:
        node(cluster.nodes[index - 1], "sh", "-c", script)

    return run


def _reachability(verb: str, index: int, peer: int, device: int) -> Callable[[SimCluster], None]:
    """Node ``index`` stops (or starts again) reaching device ``device`` of node ``peer``."""

    def run(cluster: SimCluster) -> None:
        out = node(cluster.nodes[peer - 1], HCCN_TOOL, "-i", str(device), "-ip", "-g").stdout
        address = re.search(r"ipaddr:\s*(\S+)", out).group(1)
        node(cluster.nodes[index - 1], "ascend-sim-fault", verb, address)

    return run


def _nothing(cluster: SimCluster) -> None:
    return None


HOST_CASES = [
    HostCase(
        "hccn-conf-missing",
        "PD: /etc/hccn.conf missing",
        "node2: mv /etc/hccn.conf away",
        2,
        ("/etc/hccn.conf missing",),
        _sh(2, "mv /etc/hccn.conf /etc/hccn.conf.fault"),
        _sh(2, "mv /etc/hccn.conf.fault /etc/hccn.conf"),
        group="node2",
    ),
    HostCase(
        "link-down",
        "PD: an NPU link down",
        "node1: hccn link of device 3 DOWN",
        1,
        ("device 3: link DOWN",),
        _fault(1, "link", "3", "DOWN"),
        _fault(1, "link", "3", "UP"),
        group="node1",
    ),
    HostCase(
        "device-ip-unreachable",
        "PD: a device IP unreachable prefill -> decode",
        "node1 cannot reach device 5 of node2 (hccn_tool ping)",
        1,
        ("device 5: ping", "(device 5 of NODE2) failed"),
        _reachability("unreachable", 1, 2, 5),
        _reachability("reachable", 1, 2, 5),
        group="node1",
    ),
    HostCase(
        "decode-rank-port-taken",
        "PD: one decode rank's port taken",
        "node2: a listener on 7101 (decode0 DP rank 1's HTTP port)",
        2,
        ("port 7101", "decode0 DP rank 1", "vllm-decode0-dp1", "ascend_decode_port", "already in use"),
        _fault(2, "port-hold", "7101"),
        _fault(2, "port-release", "7101"),
        group="node2",
    ),
    HostCase(
        "kv-port-taken",
        "PD: a prefill rank's Mooncake kv port taken",
        "node1: a listener on 18010 (prefill0 DP rank 1's kv range 18008-18015)",
        1,
        ("port 18010", "Mooncake kv ports of prefill0 DP rank 1", "ascend_prefill_kv_port"),
        _fault(1, "port-hold", "18010"),
        _fault(1, "port-release", "18010"),
        group="node1",
    ),
    HostCase(
        "nic-missing",
        "a NIC that does not exist",
        "ascend_nic_name: eth9 (a valid name; the nodes have eth0)",
        1,
        ("NIC eth9", "does not exist", "eth0"),
        _nothing,
        _nothing,
        layer="inventory",
        extra_vars={"ascend_nic_name": "eth9"},
        group="nic",
    ),
    HostCase(
        "chip-unhealthy",
        "an unhealthy chip",
        "node2: chip 9 health Alarm",
        2,
        ("(index 9): health Alarm", "chip of vllm-decode0-dp1"),
        _fault(2, "chip-health", "9", "Alarm"),
        _fault(2, "chip-health", "9", "OK"),
        group="node2",
    ),
    HostCase(
        "weights-missing",
        "weights missing on a host",
        "node2: /root/.cache/MiniMax-M2.7-w8a8-QuaRot hidden",
        2,
        ("model of vllm-decode0-dp0 missing", "/root/.cache/MiniMax-M2.7-w8a8-QuaRot/config.json"),
        _fault(2, "weights-missing", "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"),
        _fault(2, "weights-restore", "/root/.cache/MiniMax-M2.7-w8a8-QuaRot"),
        group="node2",
    ),
]


@pytest.fixture(scope="module")
def host_runs(sim_cluster: SimCluster, tmp_path_factory: pytest.TempPathFactory):
    """Each group of host-state cases: injected, the playbook run with snapshots before and
    after, the nodes restored (whatever happened)."""
    root = tmp_path_factory.mktemp("fault-hosts")
    runs = {}
    for group in dict.fromkeys(c.group for c in HOST_CASES):
        cases = [c for c in HOST_CASES if c.group == group]
        injected: List[HostCase] = []
        try:
            for case in cases:
                case.inject(sim_cluster)
                injected.append(case)
            mark(sim_cluster)
            before = snapshot(sim_cluster)
            extra_vars = {k: v for c in cases for k, v in (c.extra_vars or {}).items()}
            inventory = root / group
            inventory.mkdir()
            for item in ("hosts.yml", "group_vars"):
                (inventory / item).symlink_to(sim_cluster.inventory / item)
            extra = ["-e", _json(extra_vars)] if extra_vars else []
            result, seconds = ansible(PLAYBOOK, inventory, *extra)
            runs[group] = (result, seconds, before, snapshot(sim_cluster))
        finally:
            for case in reversed(injected):
                case.restore(sim_cluster)
    return runs


@pytest.mark.parametrize("case", HOST_CASES, ids=lambda c: c.id)
def test_bad_host_state_is_caught_by_preflight_before_any_host_changes(case: HostCase, host_runs, sim_cluster, fault):
    host = sim_cluster.nodes[case.host - 1]
    together = [c.id for c in HOST_CASES if c.group == case.group and c is not case]
    fault.describe(
        case=case.case,
        layer=case.layer,
        injected=case.injected + (f" (one run with: {', '.join(together)})" if together else ""),
        expected=f"preflight fails on node{case.host} naming {case.names[0]}; no host changed",
    )
    result, seconds, before, after = host_runs[case.group]
    output = result.stdout + result.stderr
    names = [n.replace("NODE2", sim_cluster.nodes[1]) for n in case.names]
    named = [line for line in problems(output) if line.startswith(f"{host}: ")]
    match = [line for line in named if all(n in line for n in names)]
    shown = (match or named or [first_error(output)])[0]
    fault.observe(f"exit {result.returncode} in {seconds:.0f} s: {shown.replace(sim_cluster.prefix + '-', '')}")
    assert result.returncode == 2, output
    assert match, (names, named, output[-3000:])
    assert "TASK [ascend.vllm.host_tuning" not in output, "a host was tuned after preflight failed"
    assert not host_changes(output), output
    assert after == before, "a node changed"
