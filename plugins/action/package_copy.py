# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action ascend.vllm.package_copy: a Python package to a host as one deterministic zip.

The zip is built on the controller and handed to the copy action, as the template action hands
it its rendered file, so checksums, check mode, diff, ownership and modes behave as copy's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

from ansible_collections.ascend.vllm.plugins.module_utils.pyz import build_zip

ARGUMENT_SPEC: Dict[str, Any] = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "path", "required": True},
    "mode": {"type": "raw", "default": "0644"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp: Any = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        task_vars = task_vars or {}
        super().run(tmp, task_vars)
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        try:
            payload = build_zip(args["src"])
        except (OSError, ValueError) as exc:
            raise AnsibleActionFail(f"cannot package {args['src']} on the controller: {exc}") from exc
        local_dir = tempfile.mkdtemp(dir=C.DEFAULT_LOCAL_TMP)
        try:
            local = os.path.join(local_dir, os.path.basename(args["dest"]))
            with open(local, "wb") as stream:
                stream.write(payload)
            new_task = self._task.copy()
            new_task.args.clear()
            new_task.args.update({k: v for k, v in args.items() if v is not None and k != "src"})
            new_task.args["src"] = local
            copy_action = self._shared_loader_obj.action_loader.get(
                "ansible.legacy.copy",
                task=new_task,
                connection=self._connection,
                play_context=self._play_context,
                loader=self._loader,
                templar=self._templar,
                shared_loader_obj=self._shared_loader_obj,
            )
            result = copy_action.run(task_vars=task_vars)
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)
            self._remove_tmp_path(self._connection._shell.tmpdir)
        result["sha256"] = hashlib.sha256(payload).hexdigest()
        return result
