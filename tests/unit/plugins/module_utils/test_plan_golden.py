# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Golden tests: the plan against the seed's own command lines (tests/unit/fixtures/plan/).

For an inventory equivalent to a seed recipe (the sample inventory, the seed's paths
/path/to/weight/..., its served name and ports, no tool-calling flags), the generated
``vllm serve`` flags and values must equal the seed's, compared flag by flag: names with
``_``/``-`` normalised, JSON values compared as parsed JSON. So are the environment, the
host tuning and the container settings. The guide was written for vLLM-Ascend v0.21, so these
tests plan with recipe v0.21. Each difference is asserted explicitly, with the reason; the list
of deviations is documented at the top of catalogue/recipes/v0.21.yml.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.plan import build_plan
from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import flag_name

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "plan"
_spec = importlib.util.spec_from_file_location("plan_inventory", FIXTURES / "inventory.py")
inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inventory)


# --- reading the seed's shell snippets --------------------------------------------------------


def fixture(name: str) -> str:
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("# Verbatim") and not line.startswith("# tests/"))


def words(text: str) -> list[str]:
    """Shell words of a command written over several lines with backslash continuations."""
    return shlex.split(text.replace("\\\n", " "))


def parse_flags(argv: list[str]) -> dict[str, Any]:
    """``--flag [value]`` words to {canonical name: value}; bare flags True, JSON parsed."""
    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        word = argv[i]
        assert word.startswith("-"), f"unexpected word {word!r}"
        name, _, inline = word.partition("=")
        value: Any = True
        if inline:
            value = inline
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 1
        if isinstance(value, str) and value.lstrip().startswith("{"):
            value = json.loads(value)
        flags[flag_name(name)] = value
        i += 1
    return flags


def serve_command(text: str, positional: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The model and flags of the ``vllm serve`` command in a seed snippet ($1..$7 filled in)."""
    start = text.index("vllm serve")
    argv = words(text[start:])
    argv = [(positional or {}).get(w, w) for w in argv]
    return argv[2], parse_flags(argv[3:])


def seed_env(text: str, values: dict[str, str]) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """(env, prepends, host tuning) of a seed snippet's ``export`` / ``unset`` / ``sysctl`` lines.

    ``$name`` references take ``values`` (the script's own variables and $1); ``X=path:$X``
    is a prepend to the inherited value.
    """
    env: dict[str, str] = {}
    prepend: dict[str, str] = {}
    tuning: dict[str, Any] = {"sysctls": {}, "governor": None}
    for line in text.split("vllm serve")[0].splitlines():
        parts = shlex.split(line, comments=True)
        if not parts:
            continue
        if parts[0] == "export":
            name, _, value = parts[1].partition("=")
            if value.endswith(f":${name}"):
                prepend[name] = value[: -len(f":${name}")]
                continue
            env[name] = values.get(value, value)
        elif parts[0] == "unset":
            env.update(dict.fromkeys(parts[1:], ""))
        elif parts[0] == "sysctl":
            key, _, value = parts[-1].partition("=")
            tuning["sysctls"][key] = int(value)
        elif parts[0] == "echo" and "scaling_governor" in line:
            tuning["governor"] = parts[1]
        elif "=" in parts[0]:  # the script's own variables (nic_name=..., local_ip=...)
            continue
        else:
            raise AssertionError(f"unhandled seed line {line!r}")
    return env, prepend, tuning


# --- inventories equivalent to the seed's recipes ---------------------------------------------


CATALOGUE = inventory.catalogue()


def seed_inventory(site: str, **extra: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The sample inventory with recipe v0.21, the seed's paths and no tool-calling flags (added
    in 5.1 "if you need to test with curl and tool calling"; tested on their own below)."""
    models = {"minimax-m2.7-w8a8": {**CATALOGUE["models"]["minimax-m2.7-w8a8"], "eagle3": "Eagle3/"}}
    seed = {"ascend_models_dir": "/path/to/weight", "ascend_models": models, "ascend_tool_calling": False}
    return inventory.load_inventory(site, {"ascend_recipe": "v0.21", **seed, **extra})


def plan_of(site: str, **extra: Any) -> dict[str, Any]:
    result = build_plan(*seed_inventory(site, **extra), CATALOGUE)
    assert result["errors"] == [], [e["text"] for e in result["errors"]]
    return result["plan"]


def servers(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for record in document["hosts"].values() for s in record["servers"]]


def our_command(server: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    flags = parse_flags(server["argv"][3:])
    # Not in the guide: every server serves /tokenizer_info, which lm-eval's remote tokenizer
    # needs (playbooks/evaluate.yml).
    assert flags.pop("enable-tokenizer-info-endpoint") is True
    return server["argv"][2], flags


def assert_same_flags(ours: dict[str, Any], seed: dict[str, Any], deviations: dict[str, Any]) -> None:
    """Flag by flag; ``deviations`` maps a flag to our value where we differ on purpose."""
    assert sorted(ours) == sorted(seed), f"only ours: {set(ours) - set(seed)}, only the seed's: {set(seed) - set(ours)}"
    for name, seed_value in seed.items():
        expected = deviations.get(name, seed_value)
        assert ours[name] == expected, f"--{name}: ours {ours[name]!r}, seed {seed_value!r}"


def assert_host_tuning(document: dict[str, Any], tuning: dict[str, Any]) -> None:
    for record in document["hosts"].values():
        assert record["tuning"]["sysctls"] == tuning["sysctls"]
        if tuning["governor"]:
            assert record["tuning"]["cpu_governor"] == tuning["governor"]


ALL_A3_CHIPS = ",".join(str(c) for c in range(16))


# --- single node ------------------------------------------------------------------------------


def test_a3_single_node() -> None:
    document = plan_of("a3", ascend_scenario="a3_single_short")
    (server,) = servers(document)
    text = fixture("a3_single.sh")
    model, seed = serve_command(text)
    ours_model, ours = our_command(server)
    assert ours_model == model
    assert_same_flags(ours, seed, {})

    env, prepend, tuning = seed_env(text, {})
    # The seed runs with every chip visible; the plan names the server's chips: the same 16.
    assert server["container"]["env"] == {**env, "ASCEND_RT_VISIBLE_DEVICES": ALL_A3_CHIPS}
    assert server["env_prepend"] == prepend
    assert_host_tuning(document, tuning)


def a3_long_context_command() -> str:
    """The A3 command with the seed's long-context adjustments applied to it."""
    adjust = parse_flags(words(fixture("a3_long_context_adjustments.txt")))
    model, flags = serve_command(fixture("a3_single.sh"))
    return model, {**flags, **adjust}


def test_a3_single_node_long_context() -> None:
    (server,) = servers(plan_of("a3", ascend_scenario="a3_single_long"))
    model, seed = a3_long_context_command()
    ours_model, ours = our_command(server)
    assert ours_model == model
    assert_same_flags(ours, seed, {})
    # tp 8 x prefill context parallel 2 = 16 chips.
    assert server["chips"] == list(range(16))


def test_a2_single_node() -> None:
    document = plan_of("a2", ascend_scenario="a2_single")
    text = fixture("a2_single.sh")
    model, seed = serve_command(text)
    env, prepend, tuning = seed_env(text, {})
    for server in servers(document):
        ours_model, ours = our_command(server)
        assert ours_model == model
        # Deviation: --data-parallel-size is always written (the seed leaves vLLM's default 1 implicit).
        assert ours.pop("data-parallel-size") == "1"
        assert_same_flags(ours, seed, {})
        assert server["container"]["env"] == {**env, "ASCEND_RT_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
        assert server["env_prepend"] == prepend
    # The A2 recipe has no cpufreq line; the default governor is the A3 one (catalogue/defaults.yml).
    assert tuning["governor"] is None
    assert_host_tuning(document, tuning)


def test_tool_calling_flags() -> None:
    seed = parse_flags(words(fixture("tool_calling_flags.txt")))
    for site, scenario in (("a3", "a3_single_short"), ("a2", "a2_single")):
        base = our_command(servers(plan_of(site, ascend_scenario=scenario))[0])[1]
        with_tools = our_command(servers(plan_of(site, ascend_scenario=scenario, ascend_tool_calling=True))[0])[1]
        assert {k: v for k, v in with_tools.items() if k not in base} == seed


# --- PD: the seed's launcher, run with its processes faked ------------------------------------


class _Blocked(Exception):
    """Process.join() on a rank whose `vllm serve` is serving: it does not return."""


def run_launcher(monkeypatch: pytest.MonkeyPatch, launch: str, ips: dict[str, str], join_blocks: bool):
    """The ``run_dp_template.sh`` arguments the seed's launch_online_dp.py starts, in order.

    Its processes are faked: ``start()`` records the template call; ``join()`` either returns
    (as the author meant) or blocks like a real serving rank would.
    """
    calls: list[list[str]] = []

    class FakeProcess:
        def __init__(self, target: Any, args: tuple[Any, ...]) -> None:
            self.target, self.args = target, args

        def start(self) -> None:
            self.target(*self.args)

        def join(self) -> None:
            if join_blocks:
                raise _Blocked

    def fake_run(argv: list[str], check: bool) -> None:
        assert argv[:2] == ["bash", "./run_dp_template.sh"] and check
        calls.append(argv[2:])

    argv = [ips.get(w, w) for w in words(fixture(launch))]
    monkeypatch.setattr(multiprocessing, "Process", FakeProcess)
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "argv", argv[1:])
    code = compile(fixture("launch_online_dp.py.txt"), "launch_online_dp.py", "exec")
    with contextlib.suppress(_Blocked):
        exec(code, {"__name__": "__main__"})
    return calls


SEED_PD = {
    "ascend_scenario": "a3_pd_1p1d_200k",
    "ascend_served_model_name": "minimax",
    "ascend_decode_kv_port": 56900,  # the seed's; outside Mooncake's range (a warning: ephemeral range)
}


def test_seed_launcher_starts_only_rank_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deviation: the seed's launcher join()s rank 0 (which serves until stopped) before it
    starts rank 1, so the DP group never completes. The plan starts every rank."""
    ips = {"<prefill_ip>": "192.0.2.11"}
    started = run_launcher(monkeypatch, "pd_prefill_launch.sh", ips, join_blocks=False)
    assert [call[3] for call in started] == ["0", "1"], "as meant: both ranks"
    blocked = run_launcher(monkeypatch, "pd_prefill_launch.sh", ips, join_blocks=True)
    assert [call[3] for call in blocked] == ["0"], "as written: rank 1 never starts"
    ours = [s["dp_rank"] for s in servers(plan_of("a3", **SEED_PD)) if s["role"] == "prefill"]
    assert ours == [0, 1]


@pytest.mark.parametrize("role", ["prefill", "decode"])
def test_pd_instances_match_the_seed(monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    document = plan_of("a3", **SEED_PD)
    hostvars, _ = seed_inventory("a3", **SEED_PD)
    host = {"prefill": "a3-node1", "decode": "a3-node2"}[role]
    ip, nic = hostvars[host]["ascend_local_ip"], hostvars[host]["ascend_nic_name"]
    # As the launcher's author meant it: every rank starts (see test_seed_launcher_starts_only_rank_0).
    calls = run_launcher(monkeypatch, f"pd_{role}_launch.sh", {f"<{role}_ip>": ip}, join_blocks=False)
    ours = [s for s in servers(document) if s["role"] == role]
    assert len(ours) == len(calls) == 2
    template = fixture(f"pd_{role}_run_dp_template.sh")
    for server, call in zip(ours, calls):
        positional = {f"${n}": value for n, value in enumerate(call, start=1)}
        model, seed = serve_command(template, positional)
        ours_model, flags = our_command(server)
        assert ours_model == model and server["host"] == host
        # Deviation: MiniMax-M2's config.json has max_position_embeddings 196608, and vLLM
        # refuses the seed's 200000 at start.
        deviations: dict[str, Any] = {"max-model-len": "196608"}
        if role == "prefill":
            # Deviation: the seed's kv_port 35880 is inside Mooncake's random range on a
            # 16-chip host, [20000, 36000); the catalogue's prefill default is 18000.
            deviations["kv-transfer-config"] = {**seed["kv-transfer-config"], "kv_port": "18000"}
        else:
            # Deviation: decode's DP group meets on 12421, so a host carrying both roles' first
            # ranks works as it is.
            deviations["data-parallel-rpc-port"] = "12421"
        assert_same_flags(flags, seed, deviations)

        env, prepend, tuning = seed_env(template, {"$local_ip": ip, "$nic_name": nic, "$1": call[0]})
        # Docker can inject upper-case proxy variables too; they are cleared with the seed's three.
        cleared_too = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "FTP_PROXY": ""}
        assert server["container"]["env"] == {**env, **cleared_too}
        assert server["env_prepend"] == prepend
        assert_host_tuning(document, tuning)


def test_pd_proxy_matches_the_seed() -> None:
    argv = words(fixture("pd_proxy.sh").split("python ", 1)[1])
    flags: dict[str, list[str]] = {}
    for word in argv[1:]:
        if word.startswith("--"):
            key = word[2:]
            flags[key] = []
        else:
            flags[key].append(word)
    proxy = plan_of("a3", **SEED_PD)["hosts"]["a3-node1"]["proxy"]
    assert [str(proxy["port"])] == flags["port"]
    ips = {"<prefill_ip>": "192.0.2.11", "<decode_ip>": "192.0.2.12"}
    assert [e["ip"] for e in proxy["prefill"]] == [ips[h] for h in flags["prefiller-hosts"]]
    assert [str(e["port"]) for e in proxy["prefill"]] == flags["prefiller-ports"]
    assert [e["ip"] for e in proxy["decode"]] == [ips[h] for h in flags["decoder-hosts"]]
    assert [str(e["port"]) for e in proxy["decode"]] == flags["decoder-ports"]


# --- the containers ---------------------------------------------------------------------------


def docker_run(name: str) -> dict[str, Any]:
    argv = words(fixture(name).split("docker run", 1)[1].replace("$IMAGE bash", ""))
    seen: dict[str, Any] = {"device": [], "v": [], "e": []}
    i = 0
    while i < len(argv):
        key, _, inline = argv[i].lstrip("-").partition("=")
        if key in ("device", "v", "e", "name", "u", "shm-size", "net", "ipc"):
            value = inline or argv[i + 1]
            i += 0 if inline else 1
            seen[key] = [*seen[key], value] if isinstance(seen.get(key), list) else value
        i += 1
    return seen


@pytest.mark.parametrize("site", ["a3", "a2"])
def test_containers_match_the_seed_docker_run(site: str) -> None:
    seed = docker_run(f"docker_run_{site}.sh")
    scenario = {"a3": "a3_single_short", "a2": "a2_single"}[site]
    container = servers(plan_of(site, ascend_scenario=scenario, ascend_models_dir="/root/.cache"))[0]["container"]
    assert sorted(container["devices"]) == sorted(seed["device"])
    assert container["volumes"] == seed["v"]
    assert container["shm_size"] == seed["shm-size"]
    assert container["network_mode"] == seed["net"] == "host"
    # A2 runs --ipc=host -u 0; A3 keeps docker's defaults (private IPC, root).
    assert container["ipc_mode"] == seed.get("ipc", "private")
    assert container["user"] == seed.get("u", "0")
    # Deviation (A2): -e VLLM_USE_MODELSCOPE=True is dropped (weights are local paths, nothing is
    # downloaded) and -e PYTORCH_NPU_ALLOC_CONF=max_split_size_mb:256 is the value the recipe's
    # own export (expandable_segments:True) replaces before vllm serve starts.
    assert {e.partition("=")[0] for e in seed["e"]} <= {"VLLM_USE_MODELSCOPE", "PYTORCH_NPU_ALLOC_CONF"}
    assert "VLLM_USE_MODELSCOPE" not in container["env"]
