"""Verify a PD deployment (molecule/pd_1p1d, molecule/pd_1p2d) against its own plan.json.

What runs must be what the plan says (every DP rank a container of the record's image, command,
environment, devices and mounts; the proxy with every rank as a backend), everything healthy,
and a request through the proxy must reach a prefill rank and then a decode rank - read from the
simulated servers' own logs and metrics, not from the proxy's word.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

from tests.molecule_plan import assert_runs_as_planned, curl_json, load_plan, metric, node, servers

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
NODES = sorted(RUNNER.get_hosts("all"))
PLAN = load_plan(EPHEMERAL)
SERVERS = list(servers(PLAN))
(PROXY,) = [record["proxy"] for record in PLAN["hosts"].values() if record["proxy"]]
GENERATED = "vllm:generation_tokens_total"


def server_id(item):
    return f"{item[0]}/{item[1]['name']}"


@pytest.mark.parametrize("name", NODES)
def test_check_mode_on_fresh_nodes_created_nothing(name):
    # Written by side_effect.yml between Molecule's `check` step and converge.
    state = json.loads((EPHEMERAL / f"after-check-{name}.json").read_text())
    assert state == {"images": [], "containers": [], "files": []}


def test_plan_is_the_scenario_shape():
    shape = {i["role"]: 0 for i in PLAN["instances"]}
    for instance in PLAN["instances"]:
        shape[instance["role"]] += 1
    assert PLAN["mode"] == "pd" and PLAN["shape"] == shape
    assert {h for record in PLAN["instances"] for h in record["hosts"]} <= set(NODES)


@pytest.mark.parametrize("item", SERVERS, ids=server_id)
def test_every_rank_runs_as_planned(item):
    host, server = item
    assert_runs_as_planned(node(host), server)


@pytest.mark.parametrize("item", SERVERS, ids=server_id)
def test_every_rank_is_healthy_on_its_port(item):
    host, server = item
    status = node(host).check_output(
        f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{server['port']}/health"
    )
    assert status == "200"


def test_the_proxy_has_every_rank_and_reports_them_healthy():
    host = node(PROXY["host"])
    config = json.loads(host.check_output("cat /etc/ascend-vllm/pd-proxy/config.json"))
    for role in ("prefill", "decode"):
        assert [b["url"] for b in config[role]["instances"]] == [b["url"] for b in PROXY[role]]
    _, health = curl_json(host, f"http://127.0.0.1:{PROXY['port']}/health")
    assert health["status"] == "ok"
    for role in ("prefill", "decode"):
        assert health[role] == {"healthy": len(PROXY[role]), "total": len(PROXY[role])}


def decode_tokens() -> dict[str, float]:
    """Generated tokens so far per decode rank ("host/container"), from each server's /metrics."""
    out = {}
    for host, server in SERVERS:
        if server["role"] == "decode":
            text = node(host).check_output(f"curl -fsS http://127.0.0.1:{server['port']}/metrics")
            out[f"{host}/{server['name']}"] = metric(text, GENERATED)
    return out


def ask(prompt: str, max_tokens: int) -> tuple[str, dict]:
    """One chat completion through the proxy; (the proxy's request id, the answer)."""
    body = {"model": PLAN["served_model_name"], "messages": [{"role": "user", "content": prompt}]}
    headers, answer = curl_json(
        node(PROXY["host"]), f"http://127.0.0.1:{PROXY['port']}/v1/chat/completions", {**body, "max_tokens": max_tokens}
    )
    return headers["x-request-id"], answer


def test_a_request_through_the_proxy_goes_to_a_prefill_then_a_decode_rank():
    before = decode_tokens()
    request_id, answer = ask(f"verify {uuid.uuid4().hex}", 5)
    generated = answer["usage"]["completion_tokens"]
    assert generated > 0 and answer["choices"][0]["message"]["content"]
    # The prefill rank computed the KV cache and parked it for decode under the proxy's request id.
    seen = [
        f"{host}/{server['name']}"
        for host, server in SERVERS
        if server["role"] == "prefill"
        and f"for request chatcmpl-{request_id}" in node(host).check_output(f"docker logs {server['name']} 2>&1")
    ]
    assert len(seen) == 1, seen
    # Exactly one decode rank generated the answer, from that KV (a decode request carries the
    # prefill's kv_transfer_params; without them the simulated decode would not have any).
    after = decode_tokens()
    grew = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert list(grew.values()) == [generated], grew


def test_requests_reach_every_decode_instance():
    instances = {i["name"] for i in PLAN["instances"] if i["role"] == "decode"}
    instance_of = {f"{host}/{s['name']}": s["instance"] for host, s in SERVERS}
    before = decode_tokens()
    for n in range(2 * len([s for _, s in SERVERS if s["role"] == "decode"])):
        ask(f"spread {n} {uuid.uuid4().hex}", 2)
    after = decode_tokens()
    assert {instance_of[name] for name in after if after[name] > before[name]} == instances
