#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: container_health
short_description: Wait until Docker containers answer their health URL with 200, showing progress
version_added: 0.1.0
description:
  - Waits, on the node, until every container of O(containers) answers its health URL with
    HTTP 200, for example the vLLM-Ascend instances of a node right after they were started,
    which take minutes to load their weights, or the PD proxy.
  - All URLs are polled at the same time, every O(delay) seconds, and each poll round also
    reads the state of each container not yet healthy with C(docker inspect). The wait of a
    container stops early when it is no longer there, no longer running, or has restarted
    (its restart count is above 0, or it started again since the wait first saw it), since
    the process that was loading is gone and waiting longer would only hide its error.
  - The containers share one deadline, O(timeout) seconds from O(started), since they load in
    parallel.
  - An action plugin on the controller calls the module in rounds of O(report_interval)
    seconds and between two rounds prints one progress line per container not yet healthy
    (elapsed time, container state, restarts, the last answer) and a line when one becomes
    healthy. These lines go to the controller's stderr, so that the stdout of a
    machine-readable callback (C(ansible.posix.json)) stays valid.
  - The task fails as soon as one container failed or at the deadline, with one message
    naming the host, each failed container, what it serves (its O(containers[].what)), its
    URL and the reason (the timeout with the last answer, the exit code, the number of
    restarts, or that it is gone), each followed by the container's last O(log_lines) log
    lines (C(docker logs --tail), stdout and stderr together). Containers still loading at
    that moment are named too.
  - Read-only; never reports a change.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  containers:
    description:
      - The containers to wait for. The names must be unique.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The container's name (or id), as C(docker inspect) and C(docker logs) take it.
        type: str
        required: true
      url:
        description:
          - Its health URL as seen from the node, for example V(http://127.0.0.1:8000/health).
          - It is requested directly, never through a proxy of the environment.
        type: str
        required: true
      what:
        description:
          - What the container serves, for the messages, for example V(prefill rank 0, port 7000).
        type: str
        default: ""
      started_at:
        description:
          - The C(State.StartedAt) the wait saw first; a container started again since then
            has restarted. The action plugin passes it from one round to the next; leave it
            unset.
        type: str
  started:
    description:
      - Unix time (seconds) at which the wait began; the deadline is O(timeout) seconds later.
        Lets several tasks share one deadline.
      - Unset, the time the first round starts, on the node's clock (RV(started) returns it).
    type: float
  timeout:
    description:
      - Seconds from O(started) until a container that is still running but not healthy
        fails the task.
    type: float
    default: 600
  delay:
    description:
      - Seconds between two polls of the URLs (and two C(docker inspect)).
    type: float
    default: 5
  report_interval:
    description:
      - Seconds between two progress lines; the action plugin calls the module in rounds of
        this length (see O(round_seconds)).
    type: float
    default: 30
  round_seconds:
    description:
      - Seconds after which one call of the module returns, after a last poll at that time,
        even though containers are still loading (their RV(containers[].verdict) is
        V(waiting)).
      - The action plugin sets it to O(report_interval) for each of its calls; a value given
        in the task is not used. Unset, one call waits until the end.
    type: float
  request_timeout:
    description:
      - Seconds one health request may take. A loading vLLM refuses connections at once; a
        busy server may be slow to answer.
    type: float
    default: 5
  validate_certs:
    description:
      - Validate the TLS certificate of an C(https) URL. A certificate that names the host
        does not match V(127.0.0.1).
    type: bool
    default: true
  log_lines:
    description:
      - How many of a failed container's last log lines the failure shows (and
        RV(containers[].logs) holds); V(0) reads no logs.
    type: int
    default: 50
attributes:
  action:
    description: Has a corresponding action plugin, so some of the work runs on the controller.
    support: full
    details:
      - The action plugin calls the module in rounds, prints the progress lines and fails
        with the message; the module polls and inspects on the node.
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Returns at once without waiting, since in check mode nothing was started that could
        become healthy.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
requirements:
  - The C(docker) command on the node, in C(/usr/bin), C(/usr/local/bin), C(/snap/bin) or
    E(PATH) (searched in this order), with access to the engine that runs the containers.
notes:
  - A container that answers 200 and runs is healthy whatever its restart count, so a
    container restarted long ago by its restart policy does not fail a later run.
  - The elapsed times are measured on the node, from O(started).
seealso:
  - module: ascend.vllm.endpoint_probe
  - module: community.docker.docker_container_info
"""

EXAMPLES = r"""
- name: Wait until the vLLM instances of the node are healthy (one deadline for all)
  ascend.vllm.container_health:
    containers:
      - name: vllm-prefill-dp0
        url: http://127.0.0.1:7000/health
        what: prefill rank 0, port 7000
      - name: vllm-prefill-dp1
        url: http://127.0.0.1:7001/health
        what: prefill rank 1, port 7001
    timeout: 1800
    delay: 5
    report_interval: 30
    log_lines: 50

- name: Wait for the PD proxy served over TLS
  ascend.vllm.container_health:
    containers:
      - name: vllm-pd-proxy
        url: https://127.0.0.1:8009/health
        what: PD proxy, port 8009
    timeout: 120
    validate_certs: false
  register: proxy_wait

- name: Show how long it took
  ansible.builtin.debug:
    msg: "{{ proxy_wait.elapsed['vllm-pd-proxy'] }} s"
"""

RETURN = r"""
started:
  description: Unix time at which the wait began (O(started), or when the first round started).
  returned: always
  type: float
  sample: 1796291471.52
elapsed:
  description: Container name -> seconds from RV(started) until it answered 200.
  returned: success, unless in check mode
  type: dict
  sample: {vllm-prefill-dp0: 96.2, vllm-prefill-dp1: 101.7}
containers:
  description: One entry per container of O(containers), in their order.
  returned: unless in check mode
  type: list
  elements: dict
  contains:
    name:
      description: The container's name.
      type: str
      sample: vllm-prefill-dp0
    url:
      description: Its health URL.
      type: str
      sample: http://127.0.0.1:7000/health
    what:
      description: What it serves (O(containers[].what)).
      type: str
      sample: prefill rank 0, port 7000
    verdict:
      description: >-
        V(healthy); V(waiting) (still loading when the call returned); or why it failed,
        V(timeout), V(exited) (no longer running), V(restarted) or V(gone).
      type: str
      sample: healthy
    healthy:
      description: Whether it answered 200 while running.
      type: bool
      sample: true
    elapsed:
      description: Seconds from RV(started) to the verdict.
      type: float
      sample: 96.2
    state:
      description: Its C(State.Status) at the verdict (V(running), V(exited), V(restarting)...), or V(gone).
      type: str
      sample: running
    restarts:
      description: Its C(RestartCount).
      type: int
      sample: 0
    exit_code:
      description: Its C(State.ExitCode) (that of the last exit when it runs again); V(null) when gone.
      type: int
      sample: 0
    oom_killed:
      description: Its C(State.OOMKilled).
      type: bool
      sample: false
    docker_error:
      description: Its C(State.Error), why Docker could not start it; empty when none.
      type: str
      sample: ""
    started_at:
      description: The C(State.StartedAt) the wait saw first.
      type: str
      sample: "2026-12-03T09:11:12.428006568Z"
    answer:
      description: >-
        The last answer of its URL, V(HTTP <status>) with an excerpt of the body, or why
        there was none (for example V(connection refused ([Errno 111] Connection refused))).
      type: str
      sample: HTTP 200
    logs:
      description: Its last O(log_lines) log lines, stdout and stderr together, when it failed.
      type: list
      elements: str
      sample: ["vllm: error: unrecognized arguments: --no-such-flag"]
"""

import concurrent.futures
import json
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.ascend.vllm.plugins.module_utils.container_health import (
    ARGUMENT_SPEC,
    FAILED,
    HEALTHY,
    WAITING,
    ContainerState,
    DockerError,
    answer_text,
    container_result,
    failure_lines,
    inspect_states,
    judge,
    log_tail,
)
from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import describe_error
from ansible_collections.ascend.vllm.plugins.module_utils.http_answer import TRANSPORT_ERRORS, answer
from ansible_collections.ascend.vllm.plugins.module_utils.tools import DOCKER_DIRS, find_tool

# A health answer's body is a few bytes (vLLM: empty; the proxy: a small JSON); read no more.
BODY_BYTES = 4096


def _poll(url: str, timeout: float, validate_certs: bool) -> Tuple[bool, str, float]:
    """(answered 200, the answer in words, when) of one request to ``url``."""
    try:
        status, body = answer(
            lambda: open_url(
                url,
                method="GET",
                timeout=timeout,
                validate_certs=validate_certs,
                use_proxy=False,  # the URL is on the node; a proxy of the environment cannot reach it
                follow_redirects="none",
                http_agent="ascend.vllm.container_health",
                use_netrc=False,
            ),
            limit=BODY_BYTES,
        )
    except TRANSPORT_ERRORS as exc:
        return False, describe_error(exc, timeout)[0], time.time()
    return status == 200, answer_text(status, body), time.time()


class _Docker:
    """The docker CLI on the node: the containers' states and logs."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path = find_tool(module, "docker", "PATH in the task's environment", "docker", opt_dirs=DOCKER_DIRS)

    def states(self, names: List[str]) -> Dict[str, ContainerState]:
        # --type container: an image of the same name must not answer for a removed container.
        rc, out, err = self.module.run_command([self.path, "inspect", "--type", "container", *names])
        try:
            return inspect_states(names, rc, json.loads(out) if out.strip() else [], err)
        except DockerError as exc:
            detail = str(exc)
        except ValueError as exc:  # stdout that is not docker's JSON
            detail = f"unreadable output of docker inspect (exit {rc}): {exc}"
        self.module.fail_json(msg=f"cannot read the state of {', '.join(names)}: {detail}")
        return {}  # not reached: fail_json exits

    def logs(self, name: str, lines: int) -> List[str]:
        # 2>&1 keeps the container's stdout and stderr in the order they were written (a
        # traceback on stderr after the last stdout line); the names are arguments, not shell.
        rc, out, err = self.module.run_command(
            ["/bin/sh", "-c", 'exec "$0" logs --tail "$1" "$2" 2>&1', self.path, str(lines), name],
            errors="surrogate_then_replace",
        )
        return log_tail(out) if rc == 0 else [f"(docker logs failed with {rc}: {(out + err).strip()})"]


def _validate(module: AnsibleModule) -> List[Mapping[str, Any]]:
    params = module.params
    for option in ("delay", "report_interval", "request_timeout"):
        if params[option] <= 0:
            module.fail_json(msg=f"{option} must be more than 0, got {params[option]:g}")
    if params["round_seconds"] is not None and params["round_seconds"] <= 0:
        module.fail_json(msg=f"round_seconds must be more than 0, got {params['round_seconds']:g}")
    if params["timeout"] < 0 or params["log_lines"] < 0:
        module.fail_json(msg="timeout and log_lines must be 0 or more")
    containers = params["containers"]
    names = [c["name"] for c in containers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        module.fail_json(msg=f"containers: each name once, got {', '.join(duplicates)} more than once")
    for c in containers:
        parts = urlsplit(c["url"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            module.fail_json(msg=f"containers: the url of {c['name']} is not an http(s) URL: {c['url']!r}")
    return containers


def wait(module: AnsibleModule, containers: List[Mapping[str, Any]], started: float) -> List[Dict[str, Any]]:
    """Poll until every container is healthy, one failed, the deadline or the round's end."""
    params = module.params
    docker = _Docker(module)
    deadline = started + params["timeout"]
    round_end = time.time() + params["round_seconds"] if params["round_seconds"] else float("inf")
    first_started: Dict[str, Optional[str]] = {c["name"]: c.get("started_at") for c in containers}
    results: Dict[str, Dict[str, Any]] = {}
    pending = list(containers)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        while pending:
            polls = {
                c["name"]: pool.submit(_poll, c["url"], params["request_timeout"], params["validate_certs"])
                for c in pending
            }
            # While the requests are in flight.
            states = docker.states([c["name"] for c in pending])
            now = time.time()
            for c in pending:
                ok, said, at = polls[c["name"]].result()
                state = states[c["name"]]
                if first_started[c["name"]] is None:
                    first_started[c["name"]] = state.started_at
                elapsed = (at if ok else now) - started
                verdict = judge(state, ok, first_started[c["name"]], elapsed, params["timeout"])
                results[c["name"]] = container_result(c, state, verdict, elapsed, said, first_started[c["name"]])
            pending = [c for c in pending if results[c["name"]]["verdict"] == WAITING]
            if any(r["verdict"] in FAILED for r in results.values()):
                break
            now = time.time()
            if not pending or now >= round_end:
                break
            # A last poll at the round's end (regular progress lines) and at the deadline,
            # whatever the delay.
            next_poll = min(now + params["delay"], round_end, max(deadline, now))
            time.sleep(next_poll - now)
    for result in results.values():
        if result["verdict"] in FAILED and result["state"] != "gone" and params["log_lines"] > 0:
            result["logs"] = docker.logs(result["name"], params["log_lines"])
    return [results[c["name"]] for c in containers]


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    started = params["started"] if params["started"] is not None else time.time()
    if module.check_mode:
        module.exit_json(changed=False, started=started, msg="not waited for in check mode: nothing was started")
    containers = _validate(module)
    results = wait(module, containers, started)
    failed = [r for r in results if r["verdict"] in FAILED]
    if failed:
        # The action plugin makes the task's message from the results, with the host in front.
        module.fail_json(
            msg="\n".join(failure_lines(None, results, params["timeout"], params["log_lines"])),
            started=started,
            containers=results,
        )
    elapsed = {r["name"]: r["elapsed"] for r in results if r["verdict"] == HEALTHY}
    module.exit_json(changed=False, started=started, containers=results, elapsed=elapsed)


if __name__ == "__main__":
    main()
