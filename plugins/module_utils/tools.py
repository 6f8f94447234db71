# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the Ascend and container tools live on a host, found one way for every module.

A non-login shell (what Ansible runs modules in) often lacks the directories the Ascend driver
installs into, so a bare name is looked up in ``ASCEND_TOOL_DIRS`` and then in ``PATH`` (the
order of Ansible's ``get_bin_path``); an explicit path must be an executable file.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Sequence, Tuple

# How many times a command that printed nothing at all is run again (see reading_run).
LOST_OUTPUT_RETRIES = 2

# npu-smi (/usr/local/bin, /usr/local/sbin on newer drivers) and hccn_tool
# (/usr/local/Ascend/driver/tools), besides the system directories.
ASCEND_TOOL_DIRS = (
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/local/Ascend/driver/tools",
    "/usr/bin",
    "/usr/sbin",
)
# docker: distribution packages and Docker CE (/usr/bin), static installs (/usr/local/bin), snap
# (/snap/bin, rarely in a non-login PATH). get_bin_path searches these before PATH.
DOCKER_DIRS = ("/usr/bin", "/usr/local/bin", "/snap/bin")


def locate_tool(
    module, path: str, option: str, what: str, opt_dirs: Optional[Sequence[str]] = None
) -> Tuple[Optional[str], Optional[str]]:
    """``(executable, None)``, or ``(None, why not)`` naming the module option to set.

    ``path`` with a ``/`` is taken as it is; a bare name goes through ``get_bin_path`` with
    ``opt_dirs`` (default ``ASCEND_TOOL_DIRS``) as the extra directories.
    """
    opt_dirs = ASCEND_TOOL_DIRS if opt_dirs is None else opt_dirs
    if "/" in path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path, None
        return None, f"{what} not found or not executable at {path} (set {option})"
    found = module.get_bin_path(path, opt_dirs=list(opt_dirs))
    if not found:
        return None, f"{what} not found: {path!r} is neither in PATH nor in {', '.join(opt_dirs)} (set {option})"
    return found, None


def find_tool(module, path: str, option: str, what: str, opt_dirs: Optional[Sequence[str]] = None) -> str:
    """The executable ``path`` names (see :func:`locate_tool`), or ``module.fail_json`` saying why not."""
    found, error = locate_tool(module, path, option, what, opt_dirs)
    if error is not None:
        module.fail_json(msg=error)
    return found or ""


def reading_run(module) -> Callable[[List[str]], Tuple[int, str, str]]:
    """``module.run_command`` for tools that always print something, run again when one
    printed nothing at all.

    ansible-core's run_command can lose the whole output of a command: when its one-second
    select times out it checks whether the child has exited, and a child that wrote and exited
    in between is never read (ansible/ansible#51393, still so in 2.21). It takes a child that
    is silent for a second and a busy host; a module running many queries at once makes it
    likely. Neither an answer nor a failure of npu-smi, hccn_tool, the docker CLI or ip is
    ever silent (a failing ``docker inspect`` names what it does not know on stderr), so an
    empty output, whatever the exit code, is asked again. The queries are read-only.
    """

    def run(argv: List[str]) -> Tuple[int, str, str]:
        for _attempt in range(LOST_OUTPUT_RETRIES):
            rc, out, err = module.run_command(argv)
            if out.strip() or err.strip():
                return rc, out, err
        return module.run_command(argv)

    return run
