# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where an inventory's broken YAML is, when Ansible says only that some YAML failed to parse.

Ansible reads group_vars and host_vars files lazily, when a task first needs a host's
variables; a syntax error then surfaces in that task as "YAML parsing failed" without the file
(ansible-core 2.19). The plan is that task in every playbook, so it looks for the file itself:
every YAML file under the ``group_vars`` and ``host_vars`` folders beside the inventory sources
and the playbook, parsed with PyYAML, each error with its file, line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List

import yaml

VARS_FOLDERS = ("group_vars", "host_vars")
SUFFIXES = ("", ".yml", ".yaml", ".json")


def _vars_files(base: Path) -> Iterable[Path]:
    for folder in VARS_FOLDERS:
        root = base / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith("."):
                yield path


def yaml_errors(sources: Iterable[str]) -> List[str]:
    """``file:line:column: problem`` for every vars file that does not parse, under the
    folders of ``sources`` (inventory files or directories, and the playbook's directory)."""
    bases: List[Path] = []
    for source in sources:
        path = Path(source)
        base = path if path.is_dir() else path.parent
        if base not in bases:
            bases.append(base)
    found: List[str] = []
    for base in bases:
        for path in _vars_files(base):
            try:
                with path.open(encoding="utf-8") as stream:
                    yaml.safe_load(stream)
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
                # "while parsing a flow mapping" names the line the unclosed construct began on.
                began = exc.context_mark if exc.context and exc.context_mark else None
                context = f" ({exc.context} that starts on line {began.line + 1})" if began else ""
                found.append(f"{where}: {exc.problem or exc.context}{context}")
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                found.append(f"{path}: {exc}")
    return found
