# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Judging a wait until containers answer their health URL: states, verdicts, messages.

No Ansible imports and no I/O. ``plugins/modules/container_health.py`` polls the URLs and runs
``docker inspect`` / ``docker logs`` on the node; ``plugins/action/container_health.py`` calls
it in rounds and prints the progress from the controller. Both share the option spec and
every message from here, so the module's results and the task's output say the same thing.

What ``docker inspect --type container NAME...`` prints (Docker 20.10 to 28): a JSON list with
one object per container found, ``Name`` with a leading ``/``, ``RestartCount`` (restarts by
the restart policy since the container was last started by hand, which resets it), and
``State`` with ``Status`` (``created``, ``running``, ``paused``, ``restarting``, ``removing``,
``exited``, ``dead``), ``ExitCode``, ``OOMKilled``, ``Error`` (why Docker could not start it)
and ``StartedAt``. A container between two restarts of its restart policy has
``Status: restarting`` and ``Running: true``, so only ``Status`` tells whether it runs.
A name that is not found leaves the list without it, a line ``... No such container: NAME``
(``No such object`` from older clients) on stderr, and exit code 1.
"""

from __future__ import annotations

import contextlib
import re
import signal
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.ascend.vllm.plugins.module_utils.endpoint_probe import excerpt

# The task's options; the module's argument spec and the action plugin's validation.
ARGUMENT_SPEC: Dict[str, Any] = dict(
    containers=dict(
        type="list",
        elements="dict",
        required=True,
        options=dict(
            name=dict(type="str", required=True),
            url=dict(type="str", required=True),
            what=dict(type="str", default=""),
            started_at=dict(type="str"),
        ),
    ),
    started=dict(type="float"),
    timeout=dict(type="float", default=600),
    delay=dict(type="float", default=5),
    report_interval=dict(type="float", default=30),
    round_seconds=dict(type="float"),
    request_timeout=dict(type="float", default=5),
    validate_certs=dict(type="bool", default=True),
    log_lines=dict(type="int", default=50),
)

# Verdicts: still loading, done, and the four ways a wait fails.
WAITING = "waiting"
HEALTHY = "healthy"
TIMEOUT = "timeout"
EXITED = "exited"
RESTARTED = "restarted"
GONE = "gone"
FAILED = (TIMEOUT, EXITED, RESTARTED, GONE)

# What the results and the messages keep of an answer's body.
ANSWER_CHARS = 200
# A log line longer than this (a dumped configuration) is cut.
LOG_LINE_CHARS = 1000

_NO_SUCH = re.compile(r"No such (?:container|object): (\S+)", re.IGNORECASE)


@dataclass(frozen=True)
class ContainerState:
    """What ``docker inspect`` says of one container; ``status`` is ``gone`` when it is absent."""

    status: str
    restarts: int = 0
    exit_code: Optional[int] = None
    started_at: Optional[str] = None
    oom_killed: bool = False
    error: str = ""


GONE_STATE = ContainerState(status=GONE)


class DockerError(Exception):
    """``docker inspect`` failed for another reason than a missing container (daemon down...)."""


def state_of(record: Mapping[str, Any]) -> ContainerState:
    """The state of one object of ``docker inspect``."""
    state = record.get("State") or {}
    return ContainerState(
        status=str(state.get("Status") or "unknown"),
        restarts=int(record.get("RestartCount") or 0),
        exit_code=state.get("ExitCode"),
        started_at=state.get("StartedAt"),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
    )


def inspect_states(
    names: Sequence[str], rc: int, records: Sequence[Mapping[str, Any]], stderr: str
) -> Dict[str, ContainerState]:
    """Each of ``names`` -> its state, from ``docker inspect --type container NAMES...``.

    ``records`` is its parsed stdout. A name Docker reports as missing is ``gone``; any other
    error (the daemon is down, permission denied) raises :class:`DockerError`: then nothing
    can be said of any container, and calling them all gone would blame the wrong thing.
    """
    by_name: Dict[str, ContainerState] = {}
    for record in records:
        state = state_of(record)
        by_name[str(record.get("Name", "")).lstrip("/")] = state
        by_name[str(record.get("Id", ""))] = state
    missing = set(_NO_SUCH.findall(stderr))
    other = " ".join(line.strip() for line in stderr.splitlines() if line.strip() and not _NO_SUCH.search(line))
    # A warning on stderr of a successful run (a bad config.json of the CLI) is not an error.
    if rc != 0 and other:
        raise DockerError(f"docker inspect exited with {rc}: {other}")
    states: Dict[str, ContainerState] = {}
    for name in names:
        if name in by_name:
            states[name] = by_name[name]
        elif name in missing:
            states[name] = GONE_STATE
        else:
            raise DockerError(f"docker inspect exited with {rc} and did not list {name}")
    return states


def judge(
    state: ContainerState, answered_200: bool, first_started_at: Optional[str], elapsed: float, timeout: float
) -> str:
    """The verdict of one poll round of one container.

    A 200 from a running container wins over its restart count: a long-running container
    that Docker restarted once weeks ago is healthy now. Short of that, a restart (by the
    restart policy, or a ``StartedAt`` other than the first one this wait saw) ends the wait:
    the process that was loading is gone and its error is in the log.
    """
    if state.status == GONE:
        return GONE
    if answered_200 and state.status == "running":
        return HEALTHY
    if state.restarts > 0 or (first_started_at is not None and state.started_at != first_started_at):
        return RESTARTED
    if state.status != "running":
        return EXITED
    if elapsed >= timeout:
        return TIMEOUT
    return WAITING


def answer_text(status: int, body: bytes) -> str:
    """An HTTP answer for the results and messages: ``HTTP 503: <body excerpt>``."""
    return f"HTTP {status}: {excerpt(body, ANSWER_CHARS)}" if body else f"HTTP {status}"


def log_tail(text: str) -> List[str]:
    """``docker logs`` output as lines, each cut to ``LOG_LINE_CHARS``."""
    return [line if len(line) <= LOG_LINE_CHARS else line[:LOG_LINE_CHARS] + " [cut]" for line in text.splitlines()]


def container_result(
    spec: Mapping[str, Any],
    state: ContainerState,
    verdict: str,
    elapsed: float,
    answer: str,
    first_started_at: Optional[str],
) -> Dict[str, Any]:
    """One container's entry in the results (the RETURN ``containers`` of the module)."""
    return {
        "name": spec["name"],
        "url": spec["url"],
        "what": spec.get("what") or "",
        "verdict": verdict,
        "healthy": verdict == HEALTHY,
        "elapsed": round(elapsed, 1),
        "state": state.status,
        "restarts": state.restarts,
        "exit_code": state.exit_code,
        "oom_killed": state.oom_killed,
        "docker_error": state.error,
        "started_at": first_started_at,
        "answer": answer,
        "logs": [],
    }


# -- messages ----------------------------------------------------------------------------------


def _times(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def label(result: Mapping[str, Any]) -> str:
    """``vllm-prefill-dp0 (prefill rank 0, port 7000)``: the container and what it serves."""
    return f"{result['name']} ({result['what']})" if result.get("what") else str(result["name"])


def _exit_text(result: Mapping[str, Any]) -> str:
    code = result.get("exit_code")
    text = f"exit code {code}"
    if isinstance(code, int) and code > 128:
        with contextlib.suppress(ValueError):  # not a signal number: only the code
            text += f" (killed by {signal.Signals(code - 128).name})"
    if result.get("oom_killed"):
        text += ", out of memory"
    if result.get("docker_error"):
        text += f"; Docker: {result['docker_error']}"
    return text


def reason(result: Mapping[str, Any], timeout: float) -> str:
    """Why a failed container is not healthy, naming its URL (the verdict in words).

    The time is counted from the start of the wait: a container that crashed at once shows
    ``0s into the wait``.
    """
    verdict, url = result["verdict"], result["url"]
    before = f"before it answered {url} with 200 ({int(result['elapsed'])}s into the wait)"
    if verdict == TIMEOUT:
        return f"did not answer {url} with 200 within {timeout:g}s; still running, last answer: {result['answer']}"
    if verdict == GONE:
        return f"was removed {before}"
    if verdict == RESTARTED:
        # A container running again has ExitCode 0: the exit code tells only while it is down.
        down = "" if result["state"] == "running" else f", last {_exit_text(result)}"
        if result["restarts"] > 0:
            times = _times(result["restarts"], "time")
            return f"exited and Docker restarted it {times} {before}; now {result['state']}{down}"
        return f"was started again {before}; now {result['state']}{down}"
    return f"stopped {before}: {result['state']}, {_exit_text(result)}"


def progress_line(host: str, result: Mapping[str, Any], timeout: float) -> str:
    """The line printed for a container still loading after a round."""
    return (
        f"{host}: {label(result)}: not healthy after {int(result['elapsed'])}s of {timeout:g}s; "
        f"{result['state']}, {_times(result['restarts'], 'restart')}; last answer: {result['answer']}"
    )


def healthy_line(host: str, result: Mapping[str, Any]) -> str:
    """The line printed when a container answers 200."""
    return f"{host}: {label(result)}: healthy after {int(result['elapsed'])}s"


def failure_lines(
    host: Optional[str], results: Sequence[Mapping[str, Any]], timeout: float, log_lines: int
) -> List[str]:
    """The failure message's lines: each failed container with its last log lines.

    Containers still loading when the wait stopped (because another one failed) are named
    last, so the operator knows they were not judged. ``host`` (the inventory name) starts
    the lines that name containers; the module alone does not know it.
    """
    at = f"{host}: " if host else ""
    lines: List[str] = []
    for result in results:
        if result["verdict"] not in FAILED:
            continue
        lines.append(f"{at}container {label(result)} {reason(result, timeout)}")
        if result["verdict"] == GONE or log_lines <= 0:
            continue
        lines.append(f"Last {log_lines} log lines (docker logs --tail {log_lines} {result['name']}):")
        lines.extend(result.get("logs") or ["(no log lines)"])
    waiting = [label(r) for r in results if r["verdict"] == WAITING]
    if waiting:
        lines.append(f"{at}still loading when the wait stopped: {', '.join(waiting)}")
    return lines
