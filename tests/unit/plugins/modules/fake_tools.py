# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fake npu-smi, hccn_tool and docker executables for the module tests.

Each is a script that answers what a test set up (from a fixture or a JSON table), optionally
after a delay, and logs every argv it was run with, so that a test sees exactly what a module
runs and how it reads the answers.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
CAT = shutil.which("cat") or "/bin/cat"

Answer = Tuple  # (rc, text) or (rc, text, seconds to wait before answering)


def fixture(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text(encoding="utf-8")


class FakeNpuSmi:
    """An executable ``npu-smi`` that prints a fixture on stdout, optional text on stderr, and exits rc."""

    def __init__(self, directory: Path, fixture: str, rc: int = 0, stderr: str = "", delay: float = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "npu-smi"
        self.log = directory / "argv.log"
        script = [
            "#!/bin/sh",
            f'printf "%s\\n" "$*" >> {shlex.quote(str(self.log))}',
            f"sleep {delay}" if delay else ":",
            # cat by absolute path: some tests run the module with an empty PATH.
            f"{CAT} {shlex.quote(str(FIXTURES / 'npu_smi' / fixture))}",
        ]
        if stderr:
            script.append(f"printf '%s\\n' {shlex.quote(stderr)} >&2")
        script.append(f"exit {rc}")
        self.path.write_text("\n".join(script) + "\n", encoding="utf-8")
        self.path.chmod(0o755)

    def calls(self) -> List[str]:
        if not self.log.exists():
            return []
        return self.log.read_text(encoding="utf-8").splitlines()


# Each scripted fake first logs its argv and loads the table the test saved.
FAKE_HEAD = """#!{python}
import json
import sys
import time

argv = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as fh:
    fh.write(json.dumps(argv) + "\\n")
with open({table!r}, encoding="utf-8") as fh:
    table = json.load(fh)
"""

FAKE_TOOL = (
    FAKE_HEAD
    + """

def reply(answer):
    rc, text = answer[:2]
    if len(answer) > 2:
        time.sleep(answer[2])
    sys.stdout.write(text)
    sys.exit(rc)


if len(argv) < 4 or argv[0] != "-i":
    reply([1, "Get invalid major cmd.\\n"])
device = table.get(argv[1])
if device is None:
    reply([1, "Get invalid device id.\\n"])
command = argv[2].lstrip("-")
if command == "ping":
    reply(device["ping"].get(argv[5], [1, "device %s PING %s\\nrecv time out seq=0\\n"
          "recv time out seq=1\\nrecv time out seq=2\\n"
          "3 packets transmitted, 0 received, 100.00%% packet loss\\n" % (argv[1], argv[5])]))
reply(device[command])
"""
)


def healthy(device: int) -> Dict[str, Any]:
    return {
        "link": (0, fixture("hccn", "link_up.txt")),
        "net_health": (0, fixture("hccn", "net_health_success.txt")),
        "ip": (0, f"ipaddr:192.168.100.{101 + device}\nnetmask:255.255.255.0\n"),
        "tls": (0, fixture("hccn", "tls_disabled.txt").replace("dev_id:3", f"dev_id:{device}")),
        "ping": {},
    }


class ScriptedFake:
    """A fake tool from a script template (FAKE_HEAD + its answers) and the table it reads."""

    def __init__(self, directory: Path, name: str, template: str, table: Dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / name
        self.log = directory / f"{name}.log"
        self.table_path = directory / f"{name}.json"
        self.table = table
        self.path.write_text(
            template.format(python=sys.executable, log=str(self.log), table=str(self.table_path)), encoding="utf-8"
        )
        self.path.chmod(0o755)

    def save(self) -> None:
        self.table_path.write_text(json.dumps(self.table), encoding="utf-8")

    def calls(self) -> List[List[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]


class FakeHccnTool(ScriptedFake):
    def __init__(self, tmp_path: Path, count: int) -> None:
        super().__init__(tmp_path, "hccn_tool", FAKE_TOOL, {str(i): healthy(i) for i in range(count)})

    def set(self, device: int, command: str, answer: Answer) -> None:
        self.table[str(device)][command] = answer

    def set_ping(self, device: int, address: str, answer: Answer) -> None:
        self.table[str(device)]["ping"][address] = answer

    def calls_by_device(self) -> Dict[str, List[List[str]]]:
        """The calls of each device, in the order that device made them."""
        by_device: Dict[str, List[List[str]]] = {}
        for call in self.calls():
            by_device.setdefault(call[1], []).append(call)
        return by_device


FAKE_DOCKER = (
    FAKE_HEAD
    + """time.sleep(table["delay"])
if table["down"]:
    sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                     "Is the docker daemon running?\\n")
    sys.exit(1)
kind, names = argv[0], [a for a in argv[2:] if not a.startswith(("--", "{{"))]
found, rc = [], 0
for name in names:
    known = table["containers"].get(name) if kind == "container" else table["images"].get(name)
    if known is None:
        # Docker 20.10's words for a name it does not know.
        sys.stderr.write("Error: No such %s: %s\\n" % (kind, name))
        rc = 1
    else:
        found.append(known)
if kind == "container":
    sys.stdout.write(json.dumps(found, indent=4) + "\\n")
else:
    sys.stdout.write("".join(image["Id"] + "\\n" for image in found))
sys.exit(rc)
"""
)


class FakeDocker(ScriptedFake):
    """A ``docker`` CLI that answers ``container inspect`` and ``image inspect`` from a table."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "docker", FAKE_DOCKER, {"down": False, "delay": 0, "containers": {}, "images": {}})

    def container(self, name: str, running: bool) -> None:
        status = "running" if running else "exited"
        self.table["containers"][name] = {"Name": f"/{name}", "State": {"Status": status, "Running": running}}

    def image(self, name: str) -> None:
        self.table["images"][name] = {"Id": "sha256:" + "5e" * 32}


def fake_printer(directory: Path, name: str, text: str) -> Path:
    """An executable ``name`` that prints ``text`` whatever its arguments (``ip -j addr show``)."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{name}.out"
    out.write_text(text, encoding="utf-8")
    path = directory / name
    path.write_text(f"#!/bin/sh\n{CAT} {shlex.quote(str(out))}\n", encoding="utf-8")
    path.chmod(0o755)
    return path
