#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pd_proxy_backends
short_description: List, take out, put back and drain the PD proxy's backends
version_added: 0.2.0
description:
  - Runs on the PD proxy's host and talks to the proxy's admin API (C(/admin/backends), see
    C(proxy/README.md)). The proxy's address and admin key are read from its configuration file
    O(config) on the host (the role C(ascend.vllm.pd_proxy) writes both), so the key never passes
    through the controller; O(url) and O(admin_api_key) override them.
  - Without O(state) it changes nothing and returns every backend (state, requests in flight, last
    error), including removed ones whose requests are still running.
  - O(state=absent) takes the DP ranks of O(instances) out of the proxy (new requests go to the
    other ranks; the requests in flight finish), then waits until none of them has a request in
    flight.
  - O(state=present) puts them back, then waits until the proxy routes to each (its health check
    passed).
  - O(state=drained) changes nothing and waits until the ranks of O(instances) have no request
    in flight; without O(instances), until every backend the proxy removed (a reload that dropped
    it) has finished its requests.
  - Admin changes last until the proxy re-reads its configuration file (SIGHUP) or restarts, the
    file staying the source of truth.
  - An action plugin on the controller calls the module in rounds of O(report_interval) seconds
    and prints a progress line after each round (the backends waited for, their state and
    requests in flight), to the controller's stderr.
author:
  - ascend.vllm contributors (@ascend-vllm)
options:
  state:
    description: What to do (see above); unset, only list the backends.
    type: str
    choices: [absent, present, drained]
  record:
    description:
      - The plan's proxy record, C(ascend_plan.hosts[<proxy host>].proxy); its C(prefill) and
        C(decode) lists name each DP rank's instance, URL and name. Required with O(instances).
    type: dict
  instances:
    description:
      - The plan's instances (C(prefill0), C(decode1), ...) whose DP ranks to act on or wait for.
        One the record does not have is an error.
    type: list
    elements: str
    default: []
  keep_serving:
    description:
      - With O(state=absent), refuse (changing nothing) when no other instance of the same phase
        would be left with all its ranks routed to (healthy or on probation); a rolling restart
        never takes the last serving group of a role out.
    type: bool
    default: false
  config:
    description: The proxy's configuration file on the host (its port, TLS and admin key).
    type: path
    default: /etc/ascend-vllm/pd-proxy/config.json
  url:
    description: The proxy's base URL; default C(http(s)://127.0.0.1:<listen.port>) from O(config).
    type: str
  admin_api_key:
    description: The proxy's admin key; default the C(admin_api_key) of O(config).
    type: str
  validate_certs:
    description: Verify the proxy's TLS certificate (it names the host, not 127.0.0.1).
    type: bool
    default: false
  wait:
    description: Wait after O(state=absent) (drained) and O(state=present) (routed to).
    type: bool
    default: true
  timeout:
    description: Seconds from O(started) until the wait fails, naming each backend still waited for.
    type: float
    default: 1800
  delay:
    description: Seconds between two listings while waiting.
    type: float
    default: 1
  report_interval:
    description: Seconds between two progress lines (the length of one round of the module).
    type: float
    default: 10
  started:
    description: Unix time the wait began; the action plugin passes it from round to round.
    type: float
  round_seconds:
    description: Seconds this call of the module polls at most; set by the action plugin.
    type: float
attributes:
  action:
    description: Has a corresponding action plugin, so some of the work runs on the controller.
    support: full
    details:
      - The action plugin calls the module in rounds, prints the progress lines and fails with
        the message; the module talks to the proxy on its host.
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - Reports what would be taken out or put back; changes nothing and does not wait.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
seealso:
  - module: ascend.vllm.container_health
"""

EXAMPLES = r"""
- name: Take decode1 out of the proxy and wait for its requests to finish
  ascend.vllm.pd_proxy_backends:
    state: absent
    record: "{{ ascend_plan.hosts[inventory_hostname].proxy }}"
    instances: [decode1]
    timeout: 1800

- name: Put it back once restarted; wait until the proxy routes to it
  ascend.vllm.pd_proxy_backends:
    state: present
    record: "{{ ascend_plan.hosts[inventory_hostname].proxy }}"
    instances: [decode1]
    timeout: 300

- name: After a reload that dropped some ranks, wait until they have drained
  ascend.vllm.pd_proxy_backends:
    state: drained

- name: List the backends
  ascend.vllm.pd_proxy_backends:
  register: proxy_backends
"""

RETURN = r"""
backends:
  description: The proxy's backends at the end (name, url, phase, state, in_flight, last_error, ...).
  returned: success
  type: list
  elements: dict
changed_backends:
  description: Names of the backends taken out or put back.
  returned: success
  type: list
  elements: str
pending:
  description: The backends still waited for (empty when done).
  returned: always
  type: list
  elements: dict
done:
  description: Whether nothing is left to wait for.
  returned: success
  type: bool
started:
  description: Unix time the wait began.
  returned: success
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.ascend.vllm.plugins.module_utils.pd_proxy_backends import (
    ARGUMENT_SPEC,
    AdminClient,
    ProxyError,
    proxy_access,
    run_round,
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        url, key = params["url"], params["admin_api_key"]
        if not url or not key:
            try:
                with open(params["config"], encoding="utf-8") as handle:
                    found_url, found_key = proxy_access(handle.read(), params["config"])
            except OSError as exc:
                raise ProxyError(f"cannot read the proxy configuration {params['config']}: {exc.strerror}") from None
            url, key = url or found_url, key or found_key
        if not key:
            raise ProxyError(
                f"the proxy's admin API is off ({params['config']} has no admin_api_key): set "
                "pd_proxy_admin_api_key, or re-run the deployment, whose pd_proxy role generates one"
            )

        def opener(method, target, headers, data):
            return open_url(
                target,
                method=method,
                headers=headers,
                data=data,
                timeout=30,
                validate_certs=params["validate_certs"],
                use_proxy=False,  # the proxy is on this host
                follow_redirects="none",
                http_agent="ascend.vllm.pd_proxy_backends",
                use_netrc=False,
            )

        result = run_round(params, AdminClient(url, key, opener), module.check_mode)
    except ProxyError as exc:
        module.fail_json(msg=str(exc), pending=[])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
