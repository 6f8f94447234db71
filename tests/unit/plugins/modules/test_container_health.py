# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ascend.vllm.container_health (the module), run in-process against local HTTP servers.

The health URLs are real HTTP servers on 127.0.0.1 whose answers a test scripts over time
(refused while "loading", 503, then 200, or a slow answer). ``docker`` is a fake script, the
only one the module finds (first on PATH, the module's extra directories emptied). It answers
``inspect --type container`` and ``logs --tail`` from files a test writes and rewrites while
the module runs (the real ``docker inspect`` records of tests/unit/fixtures/docker_inspect,
adjusted), and records every call.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from ansible_collections.ascend.vllm.plugins.modules import container_health
from tests.unit.plugins.modules.module_runner import module_failed, module_ok

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "docker_inspect"
RUNNING_STARTED_AT = "2026-12-03T09:11:12.428006568Z"

FAKE_DOCKER = f"""#!{sys.executable}
import json, os, sys
state = os.environ["FAKE_DOCKER_DIR"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as calls:
    calls.write(json.dumps(args) + "\\n")
if os.path.exists(os.path.join(state, "daemon-down")):
    print("[]")
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\\n")
    sys.exit(1)
if args[:3] == ["inspect", "--type", "container"]:
    found, rc = [], 0
    for name in args[3:]:
        path = os.path.join(state, name + ".json")
        if os.path.exists(path):
            with open(path) as f:
                found.append(json.load(f))
        else:
            sys.stderr.write("Error response from daemon: No such container: " + name + "\\n")
            rc = 1
    print(json.dumps(found, indent=4))
    sys.exit(rc)
if args[0] == "logs" and args[1] == "--tail":
    with open(os.path.join(state, args[3] + ".log")) as f:
        lines = f.read().splitlines()[-int(args[2]):]
    # Lines starting with "E " are the container's stderr: the order must survive.
    for line in lines:
        out = sys.stderr if line.startswith("E ") else sys.stdout
        out.write(line[2:] + "\\n")
        out.flush()
    sys.exit(0)
sys.exit("fake docker: unexpected " + " ".join(args))
"""


# -- fake docker ---------------------------------------------------------------------------------


class Docker:
    """The fake engine's containers: inspect records and logs in files the script reads."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, name: str, fixture: str = "running", **changes: Any) -> None:
        """Container ``name`` as the real record ``fixture``, with State/top-level ``changes``."""
        rec = json.loads((FIXTURES / f"{fixture}.json").read_text())[0]
        rec["Name"] = "/" + name
        for key, value in changes.items():
            if key == "RestartCount":
                rec[key] = value
            else:
                rec["State"][key] = value
        tmp = self.root / f"{name}.json.tmp"
        tmp.write_text(json.dumps(rec))
        tmp.replace(self.root / f"{name}.json")  # atomic: the script never reads half a file

    def remove(self, name: str) -> None:
        (self.root / f"{name}.json").unlink()

    def log(self, name: str, *lines: str) -> None:
        (self.root / f"{name}.log").write_text("".join(line + "\n" for line in lines))

    def calls(self) -> List[List[str]]:
        path = self.root / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Docker:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    state = tmp_path / "docker-state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # get_bin_path searches the module's extra directories before PATH, and this machine
    # has a real docker in /usr/bin.
    monkeypatch.setattr(container_health, "DOCKER_DIRS", ())
    monkeypatch.setenv("FAKE_DOCKER_DIR", str(state))
    return Docker(state)


# -- health servers ------------------------------------------------------------------------------

# What a server answers at a time since it started: (status, body, seconds to wait first), or
# None to drop the connection without an answer.
Script = Callable[[float], Optional[Tuple[int, bytes, float]]]


class Server:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                planned = server.script(time.monotonic() - server.start)
                if planned is None:
                    self.close_connection = True
                    return
                status, body, wait = planned
                time.sleep(wait)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/health"
        self.start = time.monotonic()
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Script], Server]]:
    servers: List[Server] = []

    def start(script: Script) -> Server:
        servers.append(Server(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def ok_after(seconds: float, loading: int = 503) -> Script:
    return lambda t: (200, b"", 0.0) if t >= seconds else (loading, b'{"status": "loading"}', 0.0)


def closed_port() -> str:
    """A URL on which nothing listens (connection refused, as while vLLM loads the weights)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/health"


def later(seconds: float, action: Callable[[], None]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def args(*containers: Dict[str, str], **extra: Any) -> Dict[str, Any]:
    return {"containers": list(containers), "timeout": 10, "delay": 0.1, "log_lines": 20, **extra}


def by_name(result: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {c["name"]: c for c in result["containers"]}


# -- healthy -------------------------------------------------------------------------------------


def test_waits_for_every_container_concurrently(docker: Docker, serve: Callable[[Script], Server]) -> None:
    # Each answers only after 1 s: one after the other would take 3 s.
    slow = [serve(lambda t: (200, b"", 1.0)) for _ in range(3)]
    for i in range(3):
        docker.put(f"vllm-prefill-dp{i}")
    begin = time.time()
    result = module_ok(
        container_health.main,
        args(*({"name": f"vllm-prefill-dp{i}", "url": s.url, "what": f"prefill rank {i}"} for i, s in enumerate(slow))),
    )
    assert time.time() - begin < 2.5
    assert [c["verdict"] for c in result["containers"]] == ["healthy"] * 3
    assert result["changed"] is False
    assert set(result["elapsed"]) == {"vllm-prefill-dp0", "vllm-prefill-dp1", "vllm-prefill-dp2"}
    # One inspect for all of them per round, no logs of healthy containers.
    inspects = [c for c in docker.calls() if c[0] == "inspect"]
    assert inspects[0] == ["inspect", "--type", "container", "vllm-prefill-dp0", "vllm-prefill-dp1", "vllm-prefill-dp2"]
    assert not [c for c in docker.calls() if c[0] == "logs"]


def test_loading_then_healthy(docker: Docker, serve: Callable[[Script], Server]) -> None:
    fast = serve(ok_after(0))
    loading = serve(ok_after(0.8))
    docker.put("vllm-decode-dp0")
    docker.put("vllm-decode-dp1")
    result = module_ok(
        container_health.main,
        args({"name": "vllm-decode-dp0", "url": fast.url}, {"name": "vllm-decode-dp1", "url": loading.url}),
    )
    found = by_name(result)
    # Each its own time: the first at its first poll, the second once its server said 200 (only
    # lower bounds and the order: on a loaded machine any poll can be late).
    assert found["vllm-decode-dp0"]["elapsed"] < found["vllm-decode-dp1"]["elapsed"]
    assert found["vllm-decode-dp1"]["elapsed"] >= 0.8
    assert found["vllm-decode-dp1"]["answer"] == "HTTP 200"
    assert found["vllm-decode-dp1"]["started_at"] == RUNNING_STARTED_AT
    # The healthy one is not polled again while the other loads.
    assert fast.requests == 1 and loading.requests >= 2


def test_a_long_running_container_restarted_once_is_healthy(docker: Docker, serve: Callable[[Script], Server]) -> None:
    up = serve(ok_after(0))
    docker.put("vllm-single", "running_after_a_restart")
    result = module_ok(container_health.main, args({"name": "vllm-single", "url": up.url}))
    assert result["containers"][0]["verdict"] == "healthy" and result["containers"][0]["restarts"] == 1


def test_check_mode_returns_at_once_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    begin = time.time()
    result = module_ok(
        container_health.main, args({"name": "vllm-single", "url": closed_port()}, _ansible_check_mode=True)
    )
    assert time.time() - begin < 1
    assert result["changed"] is False and "check mode" in result["msg"]
    assert "containers" not in result


# -- stops early ---------------------------------------------------------------------------------


def test_an_exit_stops_the_wait_with_the_exit_code_and_the_log(docker: Docker) -> None:
    docker.put("vllm-single")
    docker.log(
        "vllm-single",
        "O INFO 12-03 09:11:12 [api_server.py:1880] vLLM API server version 0.11.0",
        "E usage: vllm serve [model_tag] [options]",
        "E vllm serve: error: unrecognized arguments: --no-such-flag",
        "O (the last stdout line)",
    )
    # The same start as running.json: the process of that start exited.
    later(0.5, lambda: docker.put("vllm-single", "exited", StartedAt=RUNNING_STARTED_AT))
    begin = time.time()
    result = module_failed(
        container_health.main,
        args({"name": "vllm-single", "url": closed_port(), "what": "single, port 8001"}, timeout=60, log_lines=3),
    )
    assert time.time() - begin < 5  # not the 60 s timeout
    found = result["containers"][0]
    assert (found["verdict"], found["state"], found["exit_code"]) == ("exited", "exited", 2)
    assert found["answer"].startswith("connection refused")
    # stdout and stderr in their order, the last 3 lines.
    assert found["logs"] == [
        "usage: vllm serve [model_tag] [options]",
        "vllm serve: error: unrecognized arguments: --no-such-flag",
        "(the last stdout line)",
    ]
    assert result["msg"].splitlines()[0] == (
        f"container vllm-single (single, port 8001) stopped before it answered {found['url']} with 200 "
        f"({int(found['elapsed'])}s into the wait): exited, exit code 2"
    )
    assert "vllm serve: error: unrecognized arguments: --no-such-flag" in result["msg"]
    assert ["logs", "--tail", "3", "vllm-single"] in docker.calls()


def test_a_restart_by_the_restart_policy_stops_the_wait(docker: Docker, serve: Callable[[Script], Server]) -> None:
    other = serve(ok_after(30))
    docker.put("vllm-decode-dp0")
    docker.put("vllm-decode-dp1")
    docker.log("vllm-decode-dp1", "E RuntimeError: NPU out of memory")
    later(0.4, lambda: docker.put("vllm-decode-dp1", "restarting"))
    result = module_failed(
        container_health.main,
        args({"name": "vllm-decode-dp0", "url": other.url}, {"name": "vllm-decode-dp1", "url": closed_port()}),
    )
    found = by_name(result)
    assert found["vllm-decode-dp1"]["verdict"] == "restarted" and found["vllm-decode-dp1"]["restarts"] == 6
    assert found["vllm-decode-dp1"]["logs"] == ["RuntimeError: NPU out of memory"]
    # The other one was still loading: not judged, no logs read.
    assert found["vllm-decode-dp0"]["verdict"] == "waiting" and found["vllm-decode-dp0"]["logs"] == []
    assert "still loading when the wait stopped: vllm-decode-dp0" in result["msg"]


def test_a_start_since_the_first_round_is_a_restart(docker: Docker) -> None:
    # The StartedAt an earlier round saw (passed by the action plugin) differs from now.
    docker.put("vllm-single", "running_restarted_by_hand")
    docker.log("vllm-single")
    result = module_failed(
        container_health.main,
        args({"name": "vllm-single", "url": closed_port(), "started_at": RUNNING_STARTED_AT}),
    )
    assert result["containers"][0]["verdict"] == "restarted"
    assert result["containers"][0]["logs"] == []


def test_a_removed_container_is_gone_without_reading_logs(docker: Docker) -> None:
    docker.put("vllm-pd-proxy")
    later(0.3, lambda: docker.remove("vllm-pd-proxy"))
    result = module_failed(container_health.main, args({"name": "vllm-pd-proxy", "url": closed_port()}))
    assert result["containers"][0]["verdict"] == "gone" and result["containers"][0]["state"] == "gone"
    assert not [c for c in docker.calls() if c[0] == "logs"]


def test_a_200_while_the_container_is_not_running_is_not_health(
    docker: Docker, serve: Callable[[Script], Server]
) -> None:
    # Another process answers on the port (host network) of a container that exited.
    stranger = serve(ok_after(0))
    docker.put("vllm-single", "exited")
    docker.log("vllm-single", "O bye")
    result = module_failed(container_health.main, args({"name": "vllm-single", "url": stranger.url}))
    assert result["containers"][0]["verdict"] == "exited"


# -- the deadline and rounds ---------------------------------------------------------------------


def test_timeout_with_the_last_answer(docker: Docker, serve: Callable[[Script], Server]) -> None:
    stuck = serve(ok_after(3600))
    docker.put("vllm-single")
    docker.log("vllm-single", *[f"O loading shard {i}" for i in range(30)])
    begin = time.time()
    result = module_failed(
        container_health.main, args({"name": "vllm-single", "url": stuck.url}, timeout=1.0, delay=0.8)
    )
    took = time.time() - begin
    found = result["containers"][0]
    assert found["verdict"] == "timeout"
    assert 1.0 <= found["elapsed"] < 1.5 and took < 2.5  # a last poll at the deadline, not later
    assert found["answer"] == 'HTTP 503: {"status": "loading"}'
    assert found["logs"] == [f"loading shard {i}" for i in range(10, 30)]
    assert "within 1s; still running, last answer: HTTP 503" in result["msg"]


def test_the_deadline_counts_from_started(docker: Docker) -> None:
    docker.put("vllm-single")
    docker.log("vllm-single")
    result = module_failed(
        container_health.main,
        args({"name": "vllm-single", "url": closed_port()}, started=time.time() - 100, timeout=60),
    )
    assert result["containers"][0]["verdict"] == "timeout" and result["containers"][0]["elapsed"] >= 100


def test_a_round_returns_while_still_loading(docker: Docker, serve: Callable[[Script], Server]) -> None:
    loading = serve(ok_after(3600))
    docker.put("vllm-single")
    started = time.time()
    result = module_ok(
        container_health.main,
        args({"name": "vllm-single", "url": loading.url}, started=started, round_seconds=1.0, timeout=60, delay=0.7),
    )
    took = time.time() - started
    found = result["containers"][0]
    assert found["verdict"] == "waiting" and found["healthy"] is False
    # It returns after a last poll at the round's end.
    assert 1.0 <= found["elapsed"] <= took + 0.05 < 2.5  # elapsed is rounded to 0.1 s
    assert loading.requests >= 2
    assert result["started"] == started and result["elapsed"] == {}


def test_a_slow_answer_is_cut_by_the_request_timeout(docker: Docker, serve: Callable[[Script], Server]) -> None:
    hanging = serve(lambda t: (200, b"", 5.0))
    docker.put("vllm-single")
    docker.log("vllm-single")
    result = module_failed(
        container_health.main, args({"name": "vllm-single", "url": hanging.url}, timeout=0.5, request_timeout=0.3)
    )
    assert result["containers"][0]["answer"] == "no answer within 0.3 s (timed out)"


def test_a_dropped_connection_is_described(docker: Docker, serve: Callable[[Script], Server]) -> None:
    dropping = serve(lambda t: None)
    docker.put("vllm-single")
    docker.log("vllm-single")
    result = module_failed(container_health.main, args({"name": "vllm-single", "url": dropping.url}, timeout=0.3))
    assert result["containers"][0]["answer"] == "the server closed the connection without answering"


# -- errors --------------------------------------------------------------------------------------


def test_no_docker_names_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(container_health, "DOCKER_DIRS", (str(tmp_path / "none"),))
    result = module_failed(container_health.main, args({"name": "vllm-single", "url": closed_port()}))
    assert "docker not found" in result["msg"] and "PATH" in result["msg"]


def test_a_docker_daemon_error_fails_naming_it(docker: Docker) -> None:
    (docker.root / "daemon-down").touch()
    result = module_failed(container_health.main, args({"name": "vllm-single", "url": closed_port()}))
    assert result["msg"].startswith("cannot read the state of vllm-single: docker inspect exited with 1")
    assert "Cannot connect to the Docker daemon" in result["msg"]


@pytest.mark.parametrize(
    "containers, extra, message",
    [
        (
            [{"name": "a", "url": "http://127.0.0.1:1/health"}, {"name": "a", "url": "http://127.0.0.1:2/health"}],
            {},
            "each name once, got a more than once",
        ),
        ([{"name": "a", "url": "127.0.0.1:8000/health"}], {}, "the url of a is not an http(s) URL"),
        ([{"name": "a", "url": "http://127.0.0.1:1/health"}], {"delay": 0}, "delay must be more than 0"),
        ([{"name": "a", "url": "http://127.0.0.1:1/health"}], {"round_seconds": -1}, "round_seconds must be more"),
    ],
)
def test_bad_options(docker: Docker, containers: List[Dict[str, str]], extra: Dict[str, Any], message: str) -> None:
    result = module_failed(container_health.main, args(*containers, **extra))
    assert message in result["msg"]
    assert docker.calls() == []
