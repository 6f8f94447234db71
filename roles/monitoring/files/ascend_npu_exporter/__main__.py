# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python3 -m ascend_npu_exporter --output FILE [--npu-smi PATH] [--timeout S]``; see __init__."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional, Tuple

from ascend_npu_exporter.npu_metrics import npu_textfile
from ascend_npu_exporter.npu_smi import NpuSmiCommandError, read_npu_smi_info
from ascend_npu_exporter.tools import ASCEND_TOOL_DIRS


def _runner(timeout: float):
    def run(argv: List[str]) -> Tuple[int, str, str]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return 124, "", f"no answer within {timeout:g} s"
        return done.returncode, done.stdout, done.stderr

    return run


def _write(path: str, text: str) -> None:
    # The collector must never read half a file: write beside it, then rename over it. The
    # temporary name does not end in .prom, which the collector reads.
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".ascend_npu.", dir=directory)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="ascend_npu_exporter", description=__doc__)
    parser.add_argument("--output", required=True, help="the .prom file in the collector's directory")
    parser.add_argument("--npu-smi", default="npu-smi", help="npu-smi: a path, or a name looked up in PATH")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds npu-smi info may take")
    args = parser.parse_args(argv)
    search = os.pathsep.join([*ASCEND_TOOL_DIRS, os.environ.get("PATH", "")])
    tool = args.npu_smi if "/" in args.npu_smi else shutil.which(args.npu_smi, path=search)
    info = None
    if tool is None:
        print(f"ascend_npu_exporter: {args.npu_smi} not found in {search}", file=sys.stderr)
    else:
        try:
            info = read_npu_smi_info(_runner(args.timeout), tool)
        except NpuSmiCommandError as exc:
            print(f"ascend_npu_exporter: {exc}", file=sys.stderr)
    _write(args.output, npu_textfile(info))
    # A failed read is reported by ascend_npu_smi_up 0 (and alerted on), not by a failed unit.
    return 0


if __name__ == "__main__":
    sys.exit(main())
