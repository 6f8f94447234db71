"""The runtime fault matrix on the shared 1P2D deployment, each fault under steady load through the proxy.

Every request must complete or get a clear error (an OpenAI-style error answer, a stream ended by
an error event then ``[DONE]``, or a refused connection); none may hang past its timeout or get
HTTP 200 with an empty or truncated body (``SteadyLoad.bad``). Each case restores the deployment
(the operator's remedy: ``rolling_restart.yml`` for a group that lost a rank) so that the next
one, and the next test file, find it serving whole.

The deployment: prefill0 on node1, decode0 on node2, decode1 on node3 (each a DP group of two
ranks), the proxy on node4. MiniMax-M2 runs with expert parallelism: a rank that dies stalls
the other ranks of its group, which the proxy must take out with it.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List, Tuple

import pytest

from tests.faults import FaultRecorder
from tests.integration.day2.conftest import Day2, explain
from tests.integration.day2.load import SteadyLoad
from tests.sim_cluster import node

pytestmark = [pytest.mark.docker, pytest.mark.fault]

WHOLE = {"prefill": {"healthy": 2, "total": 2}, "decode": {"healthy": 4, "total": 4}}


def endpoint(day2: Day2) -> str:
    return day2.plan["endpoints"][0].rstrip("/")


def health(day2: Day2) -> Dict[str, Dict[str, int]]:
    """The proxy's /health counts (it answers 503 when a phase has no healthy instance)."""
    try:
        with urllib.request.urlopen(endpoint(day2) + "/health", timeout=10) as answer:
            found = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        found = json.loads(exc.read())
    return {"prefill": found["prefill"], "decode": found["decode"]}


def wait_health(day2: Day2, wanted: Dict[str, Dict[str, int]], timeout: float = 90.0) -> float:
    """Seconds until the proxy's /health says ``wanted`` (prefill and decode counts)."""
    started = time.monotonic()
    seen: object = None
    while time.monotonic() - started < timeout:
        try:
            seen = health(day2)
        except OSError as exc:  # nothing listens while the proxy restarts
            seen = exc
        if seen == wanted:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"the proxy still says {seen}, not {wanted}, after {timeout:g} s")


def metric(day2: Day2, name: str) -> Dict[str, float]:
    """Every sample of one of the proxy's own series: labels text -> value."""
    with urllib.request.urlopen(endpoint(day2) + "/metrics?relay=false", timeout=10) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if match:
            samples[match.group(1) or ""] = float(match.group(2))
    return samples


def ranks(day2: Day2, instance: str) -> List[Tuple[str, str]]:
    """``(host, container)`` of every DP rank of ``instance``, in rank order."""
    found = [
        (host, server["container"]["name"], server["dp_rank"])
        for host, record in day2.plan["hosts"].items()
        for server in record["servers"]
        if server["instance"] == instance
    ]
    return [(host, name) for host, name, _rank in sorted(found, key=lambda f: f[2])]


def proxy_container(day2: Day2) -> Tuple[str, str, int]:
    proxy = next(r["proxy"] for r in day2.plan["hosts"].values() if r["proxy"])
    return proxy["host"], proxy["name"], proxy["port"]


def max_model_len(day2: Day2) -> int:
    argv = next(s for r in day2.plan["hosts"].values() for s in r["servers"])["argv"]
    return int(argv[argv.index("--max-model-len") + 1])


def load_on(day2: Day2) -> SteadyLoad:
    return SteadyLoad(endpoint(day2), day2.plan["served_model_name"])


def roll(day2: Day2, instance: str, *extra: str) -> None:
    """The operator's remedy for a DP group that lost a rank: restart the group whole."""
    rolled = day2.playbook("playbooks/rolling_restart.yml", "-e", f"rolling_restart_instances={instance}", *extra)
    assert rolled.returncode == 0, explain(rolled)


def observed(load: SteadyLoad, extra: str = "") -> str:
    return f"{load.summary()}; bad (hang, cut, empty): {load.bad}{'; ' + extra if extra else ''}"


def test_a_decode_rank_killed(day2: Day2, fault: FaultRecorder) -> None:
    fault.describe(
        case="decode rank killed",
        layer="runtime",
        injected="docker kill of decode1's rank 1 (node3) under load; the other rank of its DP group stalls",
        expected="the proxy holds the whole group; requests retried on decode0; none bad; "
        "rolling_restart of decode1 brings it back",
    )
    victim_host, victim = ranks(day2, "decode1")[1]
    with load_on(day2) as load:
        load.wait_for(10)
        node(victim_host, "docker", "kill", victim)
        held_after = wait_health(day2, {**WHOLE, "decode": {"healthy": 2, "total": 4}}, timeout=60)
        load.wait_for(load.total + 20)
    healthy = metric(day2, "pd_proxy_backend_healthy")
    fault.observe(observed(load, f"group held {held_after:.1f} s after the kill"))
    print(f"\ndecode rank killed: {fault.row.observed}")
    assert load.bad == 0, load.failures[:5]
    held = [labels for labels, value in healthy.items() if value == 0]
    assert len(held) == 2 and all("decode1" in labels for labels in held), healthy
    roll(day2, "decode1")
    wait_health(day2, WHOLE, timeout=60)


def test_a_decode_rank_that_accepts_and_never_answers(day2: Day2, fault: FaultRecorder) -> None:
    fault.describe(
        case="decode rank hung",
        layer="runtime",
        injected="docker pause of decode0's rank 1 (node2): connections are accepted, nothing is answered",
        expected="health checks time out, the group is held and its requests aborted and retried; none bad; "
        "back on its own after docker unpause",
    )
    victim_host, victim = ranks(day2, "decode0")[1]
    with load_on(day2) as load:
        load.wait_for(10)
        node(victim_host, "docker", "pause", victim)
        try:
            held_after = wait_health(day2, {**WHOLE, "decode": {"healthy": 2, "total": 4}}, timeout=60)
            load.wait_for(load.total + 20)
        finally:
            node(victim_host, "docker", "unpause", victim)
        back_after = wait_health(day2, WHOLE, timeout=90)
        load.wait_for(load.total + 10)
    fault.observe(observed(load, f"held {held_after:.1f} s after the pause, whole {back_after:.1f} s after unpause"))
    print(f"\ndecode rank hung: {fault.row.observed}")
    assert load.bad == 0, load.failures[:5]
    assert load.succeeded >= 40


def test_decode_requests_failing_while_health_passes(day2: Day2, fault: FaultRecorder) -> None:
    fault.describe(
        case="decode health passes, requests fail",
        layer="runtime",
        injected="node3 cannot reach node1 (ip route prohibit): decode1 answers /health but every KV pull fails",
        expected="decode1's failures are charged and it is ejected; requests retried on decode0; none bad",
    )
    prefill_ip = next(s for s in day2.plan["hosts"][day2.node(1)]["servers"])["ip"]
    route = ["ip", "route", "add", "prohibit", f"{prefill_ip}/32"]
    errors_before = sum(v for k, v in metric(day2, "pd_proxy_backend_requests_total").items() if "error" in k)
    with load_on(day2) as load:
        load.wait_for(10)
        node(day2.node(3), *route)
        try:
            load.wait_for(load.total + 40)
            states = health(day2)
        finally:
            node(day2.node(3), "ip", "route", "del", "prohibit", f"{prefill_ip}/32")
        back_after = wait_health(day2, WHOLE, timeout=90)
        load.wait_for(load.total + 10)
    errors = sum(v for k, v in metric(day2, "pd_proxy_backend_requests_total").items() if "error" in k)
    fault.observe(
        observed(
            load,
            f"{errors - errors_before:.0f} decode1 attempts failed and were retried; proxy said {states}; "
            f"whole {back_after:.1f} s after the route was back",
        )
    )
    print(f"\ndecode health passes, requests fail: {fault.row.observed}")
    assert load.bad == 0 and load.failed == 0, load.failures[:5]
    assert errors > errors_before


def test_the_proxy_restarted(day2: Day2, fault: FaultRecorder) -> None:
    fault.describe(
        case="proxy restarted",
        layer="runtime",
        injected="docker restart of the PD proxy container (node4) under load",
        expected="requests in flight finish (SIGTERM drains); new ones get 503 or a refused connection "
        "while it is down; none bad",
    )
    host, container, _port = proxy_container(day2)
    with load_on(day2) as load:
        load.wait_for(10)
        node(host, "docker", "restart", container)
        back_after = wait_health(day2, WHOLE, timeout=60)
        load.wait_for(load.total + 20)
    fault.observe(observed(load, f"serving again {back_after:.1f} s after the restart command returned"))
    print(f"\nproxy restarted: {fault.row.observed}")
    assert load.bad == 0, load.failures[:5]
    assert set(load.kinds) <= {"error answer", "refused"}, load.kinds


def long_prompt(tokens: int) -> str:
    """About ``tokens`` tokens of the simulator's tokenizer (one per space-led ASCII word)."""
    return " alpha" * tokens


def chat(day2: Day2, content: str, timeout: float) -> Tuple[int, Dict]:
    body = {"model": day2.plan["served_model_name"], "messages": [{"role": "user", "content": content}]}
    request = urllib.request.Request(
        endpoint(day2) + "/v1/chat/completions",
        data=json.dumps({**body, "max_tokens": 8}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_many_streams_cancelled_at_once(day2: Day2, fault: FaultRecorder) -> None:
    fault.describe(
        case="many streams cancelled at once",
        layer="runtime",
        injected="48 streaming requests (1000 tokens each) closed by their clients after the first bytes",
        expected="the proxy's and every backend's in-flight count back to 0; the proxy serves on",
    )
    address = urllib.parse.urlsplit(endpoint(day2))
    body = json.dumps(
        {
            "model": day2.plan["served_model_name"],
            "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": 1000,
            "stream": True,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    clients = []
    for _ in range(48):
        sock = socket.create_connection((address.hostname, address.port), timeout=30)
        sock.sendall(head + body)
        clients.append(sock)
    started = [sock.recv(256) for sock in clients]  # the first bytes: every stream is committed
    peak = metric(day2, "pd_proxy_in_flight")[""]
    for sock in clients:
        sock.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = metric(day2, "pd_proxy_in_flight")[""] + sum(metric(day2, "pd_proxy_backend_in_flight").values())
        if left == 0:
            break
        time.sleep(0.5)
    status, after = chat(day2, "hi", timeout=60)
    fault.observe(
        f"{sum(b.startswith(b'HTTP/1.1 200') for b in started)} of 48 streams started, {peak:.0f} in "
        f"flight at the peak, {left:.0f} left after the clients closed; a request after: "
        f"{'answered' if after.get('choices') else 'not answered'}"
    )
    print(f"\nmany streams cancelled: {fault.row.observed}")
    assert all(b.startswith(b"HTTP/1.1 200") for b in started), started[:3]
    assert peak >= 48 and left == 0
    assert status == 200 and after["choices"]


def test_a_prompt_near_max_model_len_with_the_shipped_timeouts(day2: Day2, fault: FaultRecorder) -> None:
    limit = max_model_len(day2)
    fault.describe(
        case="prompt near max_model_len",
        layer="runtime",
        injected=f"one chat request of about {limit - 2000} prompt tokens (~{(limit - 2000) * 6 // 1000} KB) "
        "through the proxy, the shipped proxy timeouts",
        expected="HTTP 200 with the answer, within the timeouts",
    )
    started = time.monotonic()
    status, answer = chat(day2, long_prompt(limit - 2000), timeout=600)
    took = time.monotonic() - started
    usage = answer.get("usage") or {}
    fault.observe(f"HTTP {status} in {took:.1f} s, {usage.get('prompt_tokens')} prompt tokens")
    print(f"\nprompt near max_model_len: {fault.row.observed}")
    assert status == 200 and answer["choices"][0]["message"]["content"], answer
    assert limit - 3000 < usage["prompt_tokens"] < limit


def test_a_prompt_over_max_model_len(day2: Day2, fault: FaultRecorder) -> None:
    limit = max_model_len(day2)
    fault.describe(
        case="prompt over max_model_len",
        layer="runtime",
        injected=f"one chat request of about {limit + 1000} prompt tokens (max_model_len {limit})",
        expected="HTTP 400 naming the limit, relayed from the prefill; no instance ejected",
    )
    status, answer = chat(day2, long_prompt(limit + 1000), timeout=120)
    fault.observe(f"HTTP {status}: {answer.get('error', {}).get('message', answer)!s:.200}; proxy says {health(day2)}")
    print(f"\nprompt over max_model_len: {fault.row.observed}")
    assert status == 400 and str(limit) in answer["error"]["message"], answer
    assert health(day2) == WHOLE


def test_a_prefill_rank_killed(day2: Day2, fault: FaultRecorder) -> None:
    fault.describe(
        case="prefill rank killed (the only prefill group)",
        layer="runtime",
        injected="docker kill of prefill0's rank 1 (node1) under load; 1P2D has no other prefill group",
        expected="every request gets a clear error answer until the group is restarted "
        "(rolling_restart_accept_downtime); once the group is held, a 503 naming the lost rank; none bad",
    )
    victim_host, victim = ranks(day2, "prefill0")[1]
    with load_on(day2) as load:
        load.wait_for(10)
        node(victim_host, "docker", "kill", victim)
        wait_health(day2, {**WHOLE, "prefill": {"healthy": 0, "total": 2}}, timeout=60)
        failed_by_the_hold = load.failed
        load.wait_for(load.total + 20)
    after_the_hold = load.failures[failed_by_the_hold:]
    fault.observe(observed(load, f"{len(after_the_hold)} failed once the group was held: {after_the_hold[-1]:.200}"))
    print(f"\nprefill rank killed: {fault.row.observed}")
    assert load.bad == 0, load.failures[:5]
    assert load.kinds["error answer"] > 0 and set(load.kinds) <= {"error answer"}, load.kinds
    # Said at once and naming the cause: never the dead rank tried in panic mode (a 502).
    assert all("HTTP 503" in f and "its DP group prefill0 lost" in f for f in after_the_hold), after_the_hold[:3]
    roll(day2, "prefill0", "-e", "rolling_restart_accept_downtime=true")
    wait_health(day2, WHOLE, timeout=60)
