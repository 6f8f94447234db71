"""API keys end to end on the shared 1P2D deployment (issue 13, item 5).

The deployment is re-run with ascend_vllm_api_key and ascend_proxy_api_keys from a file
encrypted with ansible-vault (a vault password file, as an operator or AWX would pass it). Then:
a request without a key is refused (401) by the proxy and by an instance, the client's key is
accepted through the proxy, benchmark.yml sends it; and no key value appears in anything the run
shows or leaves behind: the playbook output (a --check --diff run too), the containers' logs and
docker inspect, plan.json, the benchmark results. The files holding keys on the hosts are 0600.
At the end the deployment is re-run without keys, so later tests find it as it was.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.faults import FaultRecorder
from tests.integration.day2.conftest import Day2, explain
from tests.sim_cluster import ROOT, node

pytestmark = [pytest.mark.docker, pytest.mark.fault]

PLAYBOOK = "playbooks/pd_1p2d.yml"


class Keys:
    def __init__(self, root: Path) -> None:
        # New values every run: a hit can only come from this run.
        self.instances = f"sk-inst-{secrets.token_hex(12)}"
        self.clients = [f"sk-client-{secrets.token_hex(12)}", f"sk-second-{secrets.token_hex(12)}"]
        self.password = root / "vault-password"
        self.password.write_text(secrets.token_hex(16) + "\n")
        self.password.chmod(0o600)
        self.vars = root / "keys.vault.yml"
        self.vars.write_text(
            json.dumps({"ascend_vllm_api_key": self.instances, "ascend_proxy_api_keys": self.clients}) + "\n"
        )
        vault = [str(ROOT / ".venv" / "bin" / "ansible-vault"), "encrypt", "--vault-password-file", str(self.password)]
        subprocess.run([*vault, str(self.vars)], check=True, capture_output=True, text=True, cwd=ROOT)
        self.outputs: Dict[str, str] = {}

    @property
    def values(self) -> List[str]:
        return [self.instances, *self.clients]

    def args(self) -> List[str]:
        return ["-e", f"@{self.vars}", "--vault-password-file", str(self.password)]

    def hits(self, what: str, text: str) -> List[str]:
        return [f"{what}: key #{i}" for i, value in enumerate(self.values) if value in text]


@pytest.fixture(scope="module")
def keys(day2: Day2, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    found = Keys(tmp_path_factory.mktemp("keys"))
    assert found.instances not in found.vars.read_text()  # really encrypted
    try:
        done = day2.playbook(PLAYBOOK, *found.args())
        found.outputs["keyed deployment"] = done.stdout + done.stderr
        assert done.returncode == 0, explain(done)
        yield found
    finally:
        # Later tests expect the unkeyed deployment.
        back = day2.playbook(PLAYBOOK)
        assert back.returncode == 0, explain(back)
        assert not any(s["auth"] for s in servers(day2))
        for server in servers(day2):  # a key turned off leaves no copy on the hosts
            assert node(server["host"], "test", "-e", server["api_key_file"], check=False).returncode == 1
        p = proxy(day2)
        assert status(p["host"], f"http://127.0.0.1:{p['port']}/v1/models") == "200"


def servers(day2: Day2) -> List[dict]:
    return [s for h in day2.plan["hosts"].values() for s in h["servers"]]


def proxy(day2: Day2) -> dict:
    return next(h["proxy"] for h in day2.plan["hosts"].values() if h["proxy"])


def status(host: str, url: str, *curl: str) -> str:
    return node(host, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *curl, url).stdout.strip()


def chat(day2: Day2, host: str, url: str, key: str) -> str:
    body = {"model": day2.plan["served_model_name"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return status(
        host,
        f"{url}/v1/chat/completions",
        "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {key}", "-d", json.dumps(body),
    )  # fmt: skip


def test_the_plan_records_auth_flags_only(day2: Day2, keys: Keys) -> None:
    assert {s["auth"] for s in servers(day2)} == {True}
    assert proxy(day2)["auth"] is True
    assert keys.hits("plan.json", (day2.plan_dir / "plan.json").read_text()) == []
    assert keys.hits("serve-commands.txt", (day2.plan_dir / "serve-commands.txt").read_text()) == []


def test_without_a_key_the_proxy_and_the_instances_answer_401(day2: Day2, keys: Keys, fault: FaultRecorder) -> None:
    fault.describe(
        case="requests without the key, keyed deployment",
        layer="security",
        injected="pd_1p2d.yml with ascend_vllm_api_key and ascend_proxy_api_keys from an ansible-vault file; "
        "requests with no key, a wrong key, the instances' key at the proxy",
        expected="401 from the proxy and from every instance on /v1; /health stays open",
    )
    p = proxy(day2)
    proxy_url = f"http://127.0.0.1:{p['port']}"
    at_proxy = [
        status(p["host"], f"{proxy_url}/v1/models"),
        chat(day2, p["host"], proxy_url, "sk-wrong"),
        chat(day2, p["host"], proxy_url, keys.instances),  # the instances' key is not a client key
    ]
    at_instances = {
        server["name"]: (
            status(server["host"], f"http://127.0.0.1:{server['port']}/v1/models"),
            # /health stays open (vLLM protects /v1 only): the health gates need no key.
            status(server["host"], f"http://127.0.0.1:{server['port']}/health"),
        )
        for server in servers(day2)
    }
    v1, health = (sorted({answers[i] for answers in at_instances.values()}) for i in (0, 1))
    fault.observe(
        f"proxy: {', '.join(at_proxy)} (no key, wrong key, instances' key); {len(at_instances)} instances: "
        f"/v1/models {v1}, /health {health}"
    )
    assert at_proxy == ["401"] * 3
    assert all(answers == ("401", "200") for answers in at_instances.values()), at_instances


def test_with_a_client_key_the_proxy_serves(day2: Day2, keys: Keys) -> None:
    p = proxy(day2)
    for key in keys.clients:
        assert chat(day2, p["host"], f"http://127.0.0.1:{p['port']}", key) == "200"
    # An instance takes its own key.
    server = servers(day2)[0]
    assert status(server["host"], f"http://127.0.0.1:{server['port']}/v1/models", "-H",
                  f"Authorization: Bearer {keys.instances}") == "200"  # fmt: skip


def test_benchmark_and_verify_send_the_key(day2: Day2, keys: Keys, tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = day2.playbook(
        "playbooks/benchmark.yml",
        *keys.args(),
        "-e", f"benchmark_results_root={results}",
        "-e", "benchmark_num_prompts=4",
        "-e", "benchmark_output_len=8",
        "-e", "benchmark_request_rate=inf",
    )  # fmt: skip
    keys.outputs["benchmark"] = done.stdout + done.stderr
    assert done.returncode == 0, explain(done)
    (run,) = results.iterdir()
    (result,) = run.glob("*.json")
    assert json.loads(result.read_text())["completed"] == 4
    for path in run.rglob("*"):
        if path.is_file():
            assert keys.hits(str(path), path.read_bytes().decode("utf-8", "replace")) == []
    verified = day2.playbook("playbooks/verify.yml", *keys.args())
    keys.outputs["verify"] = verified.stdout + verified.stderr
    assert verified.returncode == 0, explain(verified)


def test_check_diff_run_is_clean_and_shows_no_key(day2: Day2, keys: Keys) -> None:
    checked = day2.playbook(PLAYBOOK, *keys.args(), "--check", "--diff")
    keys.outputs["--check --diff"] = checked.stdout + checked.stderr
    assert checked.returncode == 0, explain(checked)


def test_no_key_in_outputs_logs_or_docker_inspect(day2: Day2, keys: Keys, fault: FaultRecorder) -> None:
    fault.describe(
        case="key values in outputs and logs",
        layer="security",
        injected="3 fresh key values deployed; every playbook output of the run (deploy, benchmark, verify, "
        "--check --diff), docker logs and docker inspect of every container searched for them",
        expected="no hit",
    )
    hits = [hit for what, text in keys.outputs.items() for hit in keys.hits(what, text)]
    assert len(keys.outputs) >= 1
    containers = [(s["host"], s["container"]["name"]) for s in servers(day2)] + [
        (proxy(day2)["host"], proxy(day2)["name"])
    ]
    for host, name in containers:
        logs = node(host, "docker", "logs", name)
        hits += keys.hits(f"docker logs {host}/{name}", logs.stdout + logs.stderr)
        hits += keys.hits(f"docker inspect {host}/{name}", node(host, "docker", "inspect", name).stdout)
    fault.observe(
        f"{len(hits)} hits in {len(keys.outputs)} playbook outputs and {len(containers)} containers' logs and inspect"
        + (f": {hits[:3]}" if hits else "")
    )
    assert hits == []


def test_the_files_holding_keys_are_0600_and_the_instances_read_the_key_from_one(day2: Day2, keys: Keys) -> None:
    p = proxy(day2)
    assert node(p["host"], "stat", "-c", "%a %U", "/etc/ascend-vllm/pd-proxy/config.json").stdout.split() == [
        "600",
        "root",
    ]
    config = json.loads(node(p["host"], "cat", "/etc/ascend-vllm/pd-proxy/config.json").stdout)
    assert config["api_keys"] == keys.clients
    assert config["prefill"]["api_key"] == config["decode"]["api_key"] == keys.instances
    for server in servers(day2):
        path = server["api_key_file"]
        assert node(server["host"], "stat", "-c", "%a %U", path).stdout.split() == ["600", "root"], server["name"]
        assert node(server["host"], "cat", path).stdout == keys.instances
