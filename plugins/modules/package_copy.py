#!/usr/bin/python
# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

# The work is done by the action plugin of the same name (plugins/action/package_copy.py), which
# builds the zip on the controller and hands it to the copy action; this file documents it.

from __future__ import annotations

DOCUMENTATION = r"""
module: package_copy
short_description: Copy a Python package to a host as one deterministic zip
version_added: 0.2.0
description:
  - Zips the C(.py) files of the Python package in O(src) on the controller - sorted, with fixed
    timestamps, symlinks stored as the files they point to, no C(__pycache__) - so that the same
    sources always give the same bytes, and copies that one file to O(dest) with
    M(ansible.builtin.copy). Python imports the package straight from the zip when O(dest) is on
    C(PYTHONPATH) (C(PYTHONPATH=/opt/app/pkg.zip python3 -m pkg)).
  - One checksum decides whether anything changed, so a re-run with the same sources reports no
    change and transfers nothing, whatever the number of files.
  - Used by the role C(ascend.vllm.pd_proxy) for the PD proxy.
options:
  src:
    description: The package directory on the controller (it holds C(__init__.py)).
    type: path
    required: true
  dest:
    description: The zip's path on the host.
    type: path
    required: true
  mode:
    description: The zip's permissions, as M(ansible.builtin.copy) takes them.
    type: raw
    default: "0644"
  owner:
    description: The zip's owner.
    type: str
  group:
    description: The zip's group.
    type: str
extends_documentation_fragment:
  - ascend.vllm.attributes
attributes:
  check_mode:
    support: full
    details: As M(ansible.builtin.copy) - reports whether the zip would change, writes nothing.
  diff_mode:
    support: none
    details: The zip is binary.
  platform:
    support: full
    platforms: posix
author:
  - ascend.vllm contributors (@ascend-vllm)
"""

EXAMPLES = r"""
- name: Install the proxy package
  ascend.vllm.package_copy:
    src: "{{ role_path }}/../../proxy/ascend_pd_proxy/"
    dest: /opt/ascend-vllm/pd-proxy/ascend_pd_proxy.zip
  register: package
"""

RETURN = r"""
sha256:
  description: The SHA-256 of the zip, for example to label a container that runs it.
  returned: success
  type: str
checksum:
  description: The SHA-1 of the zip, as M(ansible.builtin.copy) returns it.
  returned: success
  type: str
"""
