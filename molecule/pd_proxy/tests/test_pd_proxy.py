"""Verify ascend.vllm.pd_proxy on the simulated node (see ../molecule.yml).

The node runs a simulated prefill (port 7000) and decode (port 7100) instance (prepare.yml) and
the proxy on port 8009 with two worker processes (converge.yml). Requests are sent from inside
the node, where the proxy listens. The last tests run the role again from here: in --check with
a changed setting, with an invalid setting, and with an added backend (SIGHUP, no restart);
keep them last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

SCENARIO = Path(__file__).resolve().parent.parent
# The collection as its modules import it (tools/venv.sh links the checkout there), for the SSE parser.
sys.path.insert(0, str(SCENARIO.parents[1] / ".build" / "collections"))

from ansible_collections.ascend.vllm.plugins.module_utils.sse import SSEParser  # noqa: E402

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
NODE = "ascend-pdp-node"
PORT = 8009
KEY = "molecule-client-key"
CONTAINER = "vllm-pd-proxy"
CONFIG = "/etc/ascend-vllm/pd-proxy/config.json"
PACKAGE = "/opt/ascend-vllm/pd-proxy/ascend_pd_proxy.zip"
MODEL = "MiniMax-M2.7"
ROLE_TASK = "ascend.vllm.pd_proxy : "

# Runs in the node: one HTTP request, the answer as JSON on stdout (urllib: no curl needed).
HTTP = r"""
import json, sys, urllib.request, urllib.error
method, url, key, body = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
req.add_header("Content-Type", "application/json")
if key:
    req.add_header("Authorization", "Bearer " + key)
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        status, headers, text = r.status, r.headers, r.read().decode()
except urllib.error.HTTPError as e:
    status, headers, text = e.code, e.headers, e.read().decode()
print(json.dumps({"status": status, "type": headers.get("Content-Type", ""), "body": text}))
"""


@pytest.fixture(scope="module")
def host():
    return testinfra.get_host(f"docker://{NODE}")


def http(host, method, path, body=None, key=KEY):
    out = host.check_output(
        "python3 -c %s %s %s %s %s",
        HTTP,
        method,
        f"http://127.0.0.1:{PORT}{path}",
        key or "",
        json.dumps(body) if body is not None else "",
    )
    return json.loads(out)


def inspect(host):
    return json.loads(host.check_output("docker inspect %s", CONTAINER))[0]


def chat(stream=False):
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Explain prefill and decode in one sentence."}],
        "max_tokens": 12,
        "stream": stream,
    }


def metric(host, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    text = http(host, "GET", "/metrics")["body"]
    total, found = 0.0, False
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(match.group(2)), True
    return total if found else None


def start_converge(*extra, check=False):
    """Start converge.yml against the node with the JSON callback; finish() it."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)  # profile_tasks would print into the JSON
    cmd = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        INVENTORY,
        str(SCENARIO / "converge.yml"),
        *(["--check", "--diff"] if check else []),
        *extra,
    ]
    return subprocess.Popen(cmd, env=env, cwd=SCENARIO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    """(rc, report, raw stdout) of a started run."""
    out, err = proc.communicate(timeout=600)
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook output is not JSON (rc {proc.returncode}):\n{out}\n{err}")
    return proc.returncode, report, out


def run_converge(*extra, check=False):
    return finish(start_converge(*extra, check=check))


@pytest.fixture(scope="module")
def side_runs(host):
    """The check-mode run and the invalid-setting run, in parallel (neither changes anything)."""
    before = {"container": inspect(host), "config": host.file(CONFIG).sha256sum}
    procs = {
        "check": start_converge("-e", "pd_proxy_drain_timeout=30", check=True),
        "invalid": start_converge("-e", "pd_proxy_max_in_flight=0"),
    }
    runs = {name: finish(proc) for name, proc in procs.items()}
    return before, runs


def task_results(report):
    """Task name (without the role prefix) -> the node's result, for every task run."""
    out = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            if NODE in task["hosts"]:
                out[task["task"]["name"].removeprefix(ROLE_TASK)] = task["hosts"][NODE]
    return out


def one(results, prefix):
    names = [name for name in results if name.startswith(prefix)]
    assert len(names) == 1, (prefix, sorted(results))
    return results[names[0]]


def test_health(host):
    answer = http(host, "GET", "/health", key=None)
    assert answer["status"] == 200, answer
    health = json.loads(answer["body"])
    assert health["status"] == "ok"
    assert health["prefill"]["healthy"] == 1 and health["decode"]["healthy"] == 1


def test_models(host):
    answer = http(host, "GET", "/v1/models")
    assert answer["status"] == 200, answer
    assert MODEL in [m["id"] for m in json.loads(answer["body"])["data"]]


def test_chat_completion_goes_through_prefill_then_decode(host):
    before = metric(host, "pd_proxy_backend_requests_total", phase="prefill", outcome="ok") or 0
    answer = http(host, "POST", "/v1/chat/completions", chat())
    assert answer["status"] == 200, answer
    result = json.loads(answer["body"])
    assert result["choices"][0]["message"]["content"].strip()
    assert result["usage"]["completion_tokens"] > 0
    assert metric(host, "pd_proxy_backend_requests_total", phase="prefill", outcome="ok") == before + 1
    assert metric(host, "pd_proxy_backend_requests_total", phase="decode", outcome="ok") >= 1


def test_streaming_chat_completion(host):
    answer = http(host, "POST", "/v1/chat/completions", chat(stream=True))
    assert answer["status"] == 200, answer
    assert answer["type"].startswith("text/event-stream")
    events = [event.data for event in SSEParser().feed(answer["body"].encode())]
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c], chunks
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text.strip()


def test_completion(host):
    answer = http(host, "POST", "/v1/completions", {"model": MODEL, "prompt": "Ascend is", "max_tokens": 5})
    assert answer["status"] == 200, answer
    assert json.loads(answer["body"])["choices"][0]["text"]


def test_a_client_key_is_required(host):
    answer = http(host, "POST", "/v1/chat/completions", chat(), key=None)
    assert answer["status"] == 401, answer
    assert http(host, "POST", "/v1/chat/completions", chat(), key="wrong")["status"] == 401


# Runs in the node: N completions, each on a new connection (urllib keeps none), as the kernel
# spreads connections over the workers; prints how many each worker answered.
SPREAD = r"""
import collections, json, sys, urllib.request
url, key, body, count = sys.argv[1], sys.argv[2], sys.argv[3].encode(), int(sys.argv[4])
seen = collections.Counter()
for _ in range(count):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer " + key)
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
        seen[f"{r.status} {r.headers.get('x-ascend-proxy-worker')}"] += 1
print(json.dumps(seen))
"""


def test_both_workers_answer_and_metrics_add_them_up(host):
    completions = {"model": MODEL, "prompt": "Ascend is", "max_tokens": 2}
    before = metric(host, "pd_proxy_requests_total", endpoint="/v1/completions", status="200") or 0
    out = host.check_output(
        "python3 -c %s %s %s %s %s",
        SPREAD,
        f"http://127.0.0.1:{PORT}/v1/completions",
        KEY,
        json.dumps(completions),
        "60",
    )
    seen = json.loads(out)
    assert set(seen) == {"200 0", "200 1"}, seen  # every answer 200, from both workers
    assert min(seen.values()) >= 10, seen
    # Each worker answered fewer than 60: a scrape counting all 60 (whichever worker answers it)
    # sums the workers.
    after = metric(host, "pd_proxy_requests_total", endpoint="/v1/completions", status="200")
    assert after == before + 60, (before, after, seen)


def test_configuration_file(host):
    f = host.file(CONFIG)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o600)
    config = json.loads(f.content_string)
    assert config["listen"] == {"host": "0.0.0.0", "port": PORT}
    assert config["api_keys"] == [KEY]
    assert config["prefill"]["instances"] == [{"name": f"{NODE}/vllm-prefill-dp0", "url": "http://127.0.0.1:7000"}]
    assert config["decode"]["instances"] == [{"name": f"{NODE}/vllm-decode-dp0", "url": "http://127.0.0.1:7100"}]
    assert config["drain_timeout"] == 5
    assert config["workers"] == 2
    package = host.file(PACKAGE)
    assert (package.user, package.mode) == ("root", 0o644)
    # The zip holds the package's modules, the symlinked sse.py as a file, and nothing else.
    names = host.check_output(f"python3 -c 'import zipfile; print(*zipfile.ZipFile(\"{PACKAGE}\").namelist())'").split()
    assert "ascend_pd_proxy/__main__.py" in names and "ascend_pd_proxy/sse.py" in names
    assert all(n.startswith("ascend_pd_proxy/") and n.endswith(".py") for n in names), names


def test_container(host):
    info = inspect(host)
    assert info["State"]["Status"] == "running"
    assert info["State"]["Restarting"] is False and info["RestartCount"] == 0
    assert info["HostConfig"]["NetworkMode"] == "host"
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert sorted(info["HostConfig"]["Binds"]) == [
        "/etc/ascend-vllm/pd-proxy:/etc/ascend-vllm/pd-proxy:ro",
        "/opt/ascend-vllm/pd-proxy:/opt/ascend-vllm/pd-proxy:ro",
    ]
    assert info["Config"]["StopTimeout"] == 10  # drain_timeout 5 + 5
    assert info["Config"]["Cmd"] == ["python3", "-m", "ascend_pd_proxy", "--config", CONFIG]
    assert f"PYTHONPATH={PACKAGE}" in info["Config"]["Env"]
    assert info["Config"]["Image"] == "ascend-sim/vllm-ascend:0.1.0"
    labels = info["Config"]["Labels"]
    assert labels["ascend.vllm.role"] == "proxy" and labels["ascend.vllm.port"] == str(PORT)
    assert re.fullmatch(r"[0-9a-f]{64}", labels["ascend.vllm.pd_proxy_hash"])
    # no API key in the container's settings (they are in the 0600 file only)
    assert KEY not in json.dumps(info["Config"])


def test_check_mode_reports_a_changed_setting_and_changes_nothing(host, side_runs):
    snapshot, runs = side_runs
    before, config_before = snapshot["container"], snapshot["config"]
    rc, report, raw = runs["check"]
    assert rc == 0, raw
    assert report["stats"][NODE]["changed"] >= 2
    results = task_results(report)
    assert one(results, "Write the proxy configuration (validated")["changed"] is True
    assert one(results, "Run the proxy container")["changed"] is True
    assert results["Wait until the proxy is healthy"].get("skipped") is True  # no wait in check mode
    after = inspect(host)
    assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert host.file(CONFIG).sha256sum == config_before
    # the configuration task runs with no_log (a key is set): the key is nowhere in the output
    assert KEY not in raw


def test_an_invalid_setting_fails_naming_the_key_and_changes_nothing(host, side_runs):
    snapshot, runs = side_runs
    before, config_before = snapshot["container"], snapshot["config"]
    rc, report, raw = runs["invalid"]
    assert rc != 0
    failed = one(task_results(report), "Fail on the invalid configuration")
    assert failed.get("failed") is True
    assert NODE in failed["msg"] and "limits.max_in_flight" in failed["msg"], failed["msg"]
    assert host.file(CONFIG).sha256sum == config_before
    assert inspect(host)["Id"] == before["Id"]
    assert KEY not in raw


def test_an_added_backend_is_applied_with_sighup_without_a_restart(host):
    before = inspect(host)
    extra = [{"name": "extra-decode", "url": "http://127.0.0.1:7199"}]
    rc, report, raw = run_converge("-e", json.dumps({"pd_proxy_molecule_extra_decode": extra}))
    assert rc == 0, raw
    results = task_results(report)
    assert one(results, "Write the proxy configuration (validated")["changed"] is True
    assert one(results, "Run the proxy container")["changed"] is False
    assert one(results, "Reload the backends and keys of")["changed"] is True
    after = inspect(host)
    assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert "http://127.0.0.1:7199" in host.file(CONFIG).content_string
    # the running proxy knows the new (dead) decode backend and still serves through the live one
    deadline = time.monotonic() + 20
    while metric(host, "pd_proxy_backend_healthy", backend="extra-decode") is None:
        assert time.monotonic() < deadline, http(host, "GET", "/metrics")["body"]
        time.sleep(1)
    health = json.loads(http(host, "GET", "/health", key=None)["body"])
    assert health["status"] == "ok" and health["decode"]["total"] == 2
    answer = http(host, "POST", "/v1/chat/completions", chat())
    assert answer["status"] == 200, answer
