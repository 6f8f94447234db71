# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PD proxy's backends as day-2 operations see them, through its admin API.

What ``ascend.vllm.pd_proxy_backends`` does, one round at a time: list the backends, take the
DP ranks of some instances out (the proxy routes them nothing new; their requests finish), put
them back, and judge whether the ranks taken out have drained (no request in flight) or the
ranks put back are healthy. The controller (the action plugin) repeats rounds and prints the
progress lines built here.

The proxy address and its admin key come from the proxy's own configuration file on its host
(written by the role ``pd_proxy``), so the key never passes through the controller's
variables or logs. A backend is named by its URL, as the proxy keys them.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.http_answer import TRANSPORT_ERRORS, answer

PHASES = ("prefill", "decode")
# The proxy's backend states (proxy/ascend_pd_proxy/backends.py) that get requests.
ROUTED = ("healthy", "probation")
REMOVED = "removed"
# No state: list the backends only.
STATES = ("absent", "present", "drained")
WAIT_FOR = {"absent": "drained", "drained": "drained", "present": "healthy", None: None}

ARGUMENT_SPEC: Dict[str, Any] = dict(
    state=dict(type="str", choices=list(STATES)),
    record=dict(type="dict"),
    instances=dict(type="list", elements="str", default=[]),
    config=dict(type="path", default="/etc/ascend-vllm/pd-proxy/config.json"),
    url=dict(type="str"),
    admin_api_key=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", default=False),
    wait=dict(type="bool", default=True),
    keep_serving=dict(type="bool", default=False),
    timeout=dict(type="float", default=1800.0),
    delay=dict(type="float", default=1.0),
    report_interval=dict(type="float", default=10.0),
    started=dict(type="float"),
    round_seconds=dict(type="float"),
)


class ProxyError(Exception):
    """The proxy could not be read or refused a change; the message names it."""


class Target(NamedTuple):
    """One DP rank as the proxy knows it (the admin API's body)."""

    phase: str
    url: str
    name: str
    instance: str

    def body(self) -> Dict[str, str]:
        return {"phase": self.phase, "url": self.url, "name": self.name, "group": self.instance}


def proxy_instances(backends: Optional[Sequence[Mapping[str, Any]]]) -> List[Dict[str, str]]:
    """The proxy configuration's ``instances`` for the plan's backend records of one phase: each
    rank's URL and name, and its DP group (the plan's instance), whose ranks stand or fall together."""
    found = []
    for backend in backends or []:
        url = str(backend.get("url") or "").rstrip("/")  # "" is refused by the role's checks
        instance = {"url": url, "name": str(backend.get("name") or url)}
        if backend.get("instance"):  # a rank on its own has no group
            instance["group"] = str(backend["instance"])
        found.append(instance)
    return found


def targets(record: Optional[Mapping[str, Any]], instances: Sequence[str]) -> List[Target]:
    """The ranks of ``instances`` in the plan's proxy record, prefill first, in rank order.

    An instance the record does not have is an error naming it (a typo must not roll nothing).
    """
    if not instances:
        return []
    if not isinstance(record, Mapping):
        raise ProxyError("instances need record: the plan's proxy record (ascend_plan.hosts[<proxy host>].proxy)")
    found = [
        Target(phase, i["url"], i["name"], i.get("group", ""))
        for phase in PHASES
        for i in proxy_instances(record.get(phase))
        if i.get("group", "") in instances
    ]
    missing = [i for i in instances if i not in {t.instance for t in found}]
    if missing:
        known = sorted({str(b.get("instance")) for p in PHASES for b in record.get(p) or []})
        raise ProxyError(f"instance(s) {', '.join(missing)} not in the proxy record (it has {', '.join(known)})")
    return found


def proxy_access(config_text: str, path: str) -> Tuple[str, Optional[str]]:
    """``(base URL on the host, admin key)`` from the proxy's configuration file."""
    try:
        config = json.loads(config_text)
    except ValueError as exc:
        raise ProxyError(f"{path}: not JSON ({exc})") from None
    listen = config.get("listen") or {}
    scheme = "https" if (config.get("tls") or {}).get("certfile") else "http"
    port = int(listen.get("port") or 8009)
    return f"{scheme}://127.0.0.1:{port}", config.get("admin_api_key") or None


class AdminClient:
    """``/admin/backends`` of one proxy. ``opener(method, url, headers, data)`` is ``open_url``."""

    def __init__(self, base_url: str, key: str, opener: Callable[..., Any]) -> None:
        self.url = base_url.rstrip("/") + "/admin/backends"
        self.key = key
        self.opener = opener

    def _call(self, method: str, body: Optional[Mapping[str, Any]] = None) -> Any:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        data = None if body is None else json.dumps(body).encode()
        try:
            status, raw = answer(lambda: self.opener(method, self.url, headers, data))
        except TRANSPORT_ERRORS as exc:
            raise ProxyError(f"{method} {self.url}: no answer ({exc})") from None
        try:
            document = json.loads(raw or b"null")
        except ValueError:
            document = None
        if status != 200:
            message = document.get("error", {}).get("message") if isinstance(document, dict) else None
            raise ProxyError(f"{method} {self.url}: HTTP {status}: {message or raw[:200]!r}")
        return document

    def listing(self) -> Dict[str, Any]:
        """The proxy's ``/health`` counts plus ``backends`` (every one, removed ones still draining too)."""
        document = self._call("GET")
        if not isinstance(document, dict) or not isinstance(document.get("backends"), list):
            raise ProxyError(f"GET {self.url}: not a backend listing")
        return document

    def remove(self, target: Target) -> Dict[str, Any]:
        return self._call("DELETE", target.body())

    def add(self, target: Target) -> Dict[str, Any]:
        return self._call("POST", target.body())


def _by_url(listing: Mapping[str, Any]) -> Dict[Tuple[str, str], Mapping[str, Any]]:
    return {(b["phase"], str(b["url"]).rstrip("/")): b for b in listing["backends"]}


def changes(state: str, listing: Mapping[str, Any], wanted: Sequence[Target]) -> List[Target]:
    """The targets a change must touch: absent - those still active; present - those not active."""
    current = _by_url(listing)
    active = {key for key, b in current.items() if b.get("state") != REMOVED}
    if state == "absent":
        return [t for t in wanted if (t.phase, t.url) in active]
    if state == "present":
        return [t for t in wanted if (t.phase, t.url) not in active]
    return []


def left_serving(record: Mapping[str, Any], listing: Mapping[str, Any], out: Sequence[Target]) -> List[str]:
    """Why taking ``out`` would leave a phase with no instance whose every rank is routed to."""
    current = _by_url(listing)
    leaving = {t.instance for t in out}
    problems = []
    for phase in sorted({t.phase for t in out}):
        ranks: Dict[str, List[str]] = {}
        for b in record.get(phase) or []:
            state = (current.get((phase, str(b["url"]).rstrip("/"))) or {}).get("state", "missing")
            ranks.setdefault(str(b.get("instance")), []).append(state)
        serving = [name for name, found in ranks.items() if name not in leaving and all(s in ROUTED for s in found)]
        if not serving:
            others = "; ".join(f"{n}: {', '.join(found)}" for n, found in ranks.items() if n not in leaving)
            problems.append(
                f"taking out {', '.join(sorted(leaving))} would leave no {phase} instance whose ranks are all "
                f"routed to ({others or 'there is no other'})"
            )
    return problems


def still_draining(listing: Mapping[str, Any], wanted: Sequence[Target]) -> List[Mapping[str, Any]]:
    """Backends whose requests are not over: of ``wanted`` those with requests in flight, or
    without ``wanted`` every removed backend the proxy still lists (it forgets one once idle)."""
    if not wanted:
        return [b for b in listing["backends"] if b.get("state") == REMOVED]
    current = _by_url(listing)
    return [current[k] for k in ((t.phase, t.url) for t in wanted) if k in current and current[k].get("in_flight")]


def not_routed(listing: Mapping[str, Any], wanted: Sequence[Target]) -> List[Mapping[str, Any]]:
    """Targets the proxy does not route to yet (``unknown``, ``ejected``, missing)."""
    current = _by_url(listing)
    missing = {"state": "missing", "in_flight": 0, "last_error": None}
    found = [current.get((t.phase, t.url)) or dict(missing, name=t.name, url=t.url, phase=t.phase) for t in wanted]
    return [b for b in found if b.get("state") not in ROUTED]


def pending(wait_for: Optional[str], listing: Mapping[str, Any], wanted: Sequence[Target]) -> List[Mapping[str, Any]]:
    if wait_for == "drained":
        return still_draining(listing, wanted)
    if wait_for == "healthy":
        return not_routed(listing, wanted)
    return []


def describe(backend: Mapping[str, Any]) -> str:
    text = f"{backend.get('phase')} {backend.get('name')} ({backend.get('url')}): {backend.get('state')}"
    if backend.get("in_flight"):
        text += f", {backend['in_flight']} request(s) in flight"
    if backend.get("last_error"):
        text += f", last error: {backend['last_error']}"
    return text


def progress_line(host: str, wait_for: str, waiting: Sequence[Mapping[str, Any]], elapsed: float) -> str:
    what = "to drain" if wait_for == "drained" else "to be routed to"
    return f"{host}: {elapsed:.0f} s, waiting for {len(waiting)} backend(s) {what}: " + "; ".join(
        map(describe, waiting)
    )


def failure_message(host: str, wait_for: str, waiting: Sequence[Mapping[str, Any]], timeout: float) -> str:
    what = "still have requests in flight" if wait_for == "drained" else "are still not routed to (not healthy)"
    lines = [f"{host}: after {timeout:g} s (timeout) these PD proxy backends {what}:"]
    return "\n".join(lines + [f"  {describe(b)}" for b in waiting])


def run_round(
    params: Mapping[str, Any],
    client: AdminClient,
    check_mode: bool,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Dict[str, Any]:
    """One round of the module: the change (idempotent), then polls until done or the round ends.

    Returns ``changed``, ``done``, ``started``, ``changed_backends`` (names), ``pending`` (the
    backends still waited for) and ``backends`` (the last listing). Raises ProxyError.
    """
    state = params["state"]
    wanted = targets(params.get("record"), params.get("instances") or [])
    if state in ("absent", "present") and not wanted:
        raise ProxyError(f"state={state} needs instances (and record) to act on")
    started = params.get("started") or clock()
    listing = client.listing()
    todo = changes(state, listing, wanted)
    if state == "absent" and todo and params.get("keep_serving"):
        problems = left_serving(params.get("record") or {}, listing, todo)
        if problems:
            raise ProxyError("; ".join(problems) + "; nothing was taken out")
    if todo and not check_mode:
        for target in todo:
            (client.remove if state == "absent" else client.add)(target)
        listing = client.listing()
    wait_for = WAIT_FOR[state] if params.get("wait", True) and not check_mode else None
    round_end = clock() + (params.get("round_seconds") or params["timeout"])
    waiting = pending(wait_for, listing, wanted)
    while waiting and clock() < min(round_end, started + params["timeout"]):
        sleep(params["delay"])
        listing = client.listing()
        waiting = pending(wait_for, listing, wanted)
    result: Dict[str, Any] = {
        "changed": bool(todo),
        "done": not waiting,
        "started": started,
        "wait_for": wait_for,
        "changed_backends": [t.name for t in todo],
        "pending": waiting,
        "backends": listing["backends"],
        "timed_out": bool(waiting) and clock() >= started + params["timeout"],
        "elapsed": round(clock() - started, 1),
    }
    return result
