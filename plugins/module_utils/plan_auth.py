# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""API keys of the deployment plan: validated here, recorded only as booleans.

``ascend_vllm_api_key`` is the key every vLLM instance requires (vLLM's ``--api-key``, given to
the containers as ``VLLM_API_KEY`` by the role vllm_server); ``ascend_proxy_api_keys`` are the
keys clients present to the PD proxy. The plan is written to disk (plan.json) and shown, so it
records only whether a key is required (``auth``); the values travel from the inventory (Ansible
Vault, an AWX credential) to the roles through the playbooks, never through the plan. For the
same reason no message here quotes a value: an error names the host and the variable only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence

from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import CoerceError, HostView, Issues

VLLM_KEY = "ascend_vllm_api_key"
PROXY_KEYS = "ascend_proxy_api_keys"
# Where the role vllm_server keeps the instances' key on a host (root, 0600), and where a
# server's container reads it into VLLM_API_KEY at start (plan_render.entrypoint).
KEY_FILE = "/etc/ascend-vllm/vllm-api-key"
KEY_MOUNT = "/run/secrets/ascend-vllm-api-key"


def _key(value: Any, what: str = "the key") -> str:
    # An HTTP header value: "Authorization: Bearer <key>" cannot carry whitespace, and a key
    # that is all blanks is a mistake (an empty survey answer, a missing vault value).
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int)):
        raise CoerceError(f"{what} is not a string (it is a {type(value).__name__}; quote it)")
    text = str(value)
    if not text.strip():
        raise CoerceError(f"{what} is empty")
    if any(char.isspace() for char in text):
        raise CoerceError(f"{what} contains whitespace (a space, a tab or a line break, e.g. from a vault file)")
    return text


def to_api_key(value: Any) -> str:
    """One key: a non-empty string without whitespace. The error never quotes it."""
    return _key(value)


def key_list(value: Any) -> List[Any]:
    """``ascend_proxy_api_keys`` as a list: a string is one key (what an AWX credential or a
    survey injects: one text field), empty or null none. Not validated (``to_api_keys``)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise CoerceError(f"is a {type(value).__name__}, not a list of keys (write [KEY, ...])")


def to_api_keys(value: Any) -> List[str]:
    """A list of keys (or one key as a string), each as ``to_api_key``. The errors name an entry
    by its index only."""
    return [_key(item, f"entry {index}") for index, item in enumerate(key_list(value))]


@dataclass
class Auth:
    """What the plan records: whether the instances, and the PD proxy, require a key."""

    servers: bool = False
    proxy: bool = False

    def secret_files(self) -> Dict[str, tuple]:
        """The servers' secrets: environment variable -> (file on the host, file in the container)."""
        return {"VLLM_API_KEY": (KEY_FILE, KEY_MOUNT)} if self.servers else {}


def _set(view: HostView, var: str) -> bool:
    # [] is "no keys", as "" and null are "no key".
    return view.has(var) and view.raw.get(var) != []


def read_auth(views: Mapping[str, HostView], deployment: Sequence[str], proxies: Sequence[str], pd: bool) -> Auth:
    """Validate both variables on the hosts that use them, and return the flags.

    ``ascend_vllm_api_key`` is deployment-wide and must be set on every host of the deployment
    or on none (the proxy sends it to every instance; a host without it would serve openly).
    ``ascend_proxy_api_keys`` is read on the proxy hosts.
    """
    if not deployment:
        return Auth()
    first = views[deployment[0]]
    issues: Issues = first.issues
    keyed: Dict[str, Any] = {}
    for name in deployment:
        view = views[name]
        if _set(view, VLLM_KEY):
            keyed[name] = view.get(VLLM_KEY, to_api_key)
    if keyed and len(keyed) < len(deployment):
        with_key = next(iter(keyed))
        for name in deployment:
            if name not in keyed:
                issues.error(
                    name,
                    VLLM_KEY,
                    f"not set here but set on {with_key}: every instance and the proxy need the same key; "
                    "set it in group_vars/all (vault-encrypted) or as an extra var",
                )
    values = {value for value in keyed.values() if value is not None}
    if len(values) > 1:
        reference = keyed[next(iter(keyed))]
        for name, value in keyed.items():
            if value is not None and value != reference:
                issues.error(
                    name,
                    VLLM_KEY,
                    f"differs from the value on {next(iter(keyed))}: one key for the whole deployment; "
                    "set it in group_vars/all (vault-encrypted) or as an extra var",
                )
    auth = Auth(servers=bool(keyed))
    clients = [name for name in (proxies if pd else []) if _set(views[name], PROXY_KEYS)]
    for name in clients:
        views[name].get(PROXY_KEYS, to_api_keys)
    auth.proxy = bool(clients)
    if pd and clients and len(clients) < len(proxies):
        for name in proxies:
            if name not in clients:
                issues.error(name, PROXY_KEYS, f"not set here but set on {clients[0]}: every proxy needs keys")
    if not pd:
        for name in deployment:
            if _set(views[name], PROXY_KEYS):
                message = "a single-node deployment has no proxy: ignored (clients present ascend_vllm_api_key)"
                issues.warn(name, PROXY_KEYS, message)
    elif auth.proxy and not auth.servers:
        message = (
            "the proxy requires a key but the instances do not (ascend_vllm_api_key): a client that reaches "
            "their ports directly bypasses it"
        )
        issues.warn(proxies[0], PROXY_KEYS, message)
    elif auth.servers and not auth.proxy and proxies:
        message = "the instances require a key but the proxy does not (ascend_proxy_api_keys): it serves anyone"
        issues.warn(proxies[0], PROXY_KEYS, message)
    return auth
