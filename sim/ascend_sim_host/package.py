"""What of ``sim/ascend_sim`` goes into the images, and the single-file zipapps made of it."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from ascend_sim_host.config import PACKAGE_DIR
from ascend_sim_host.shell import say


def is_build_artifact(path: Path) -> bool:
    """Byte code and its caches: never an input of an image, never copied into one."""
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo")


def node_package_files() -> list[Path]:
    """What of ascend_sim goes into the node image (everything but the vllm sub-package)."""
    return [
        p
        for p in sorted(PACKAGE_DIR.rglob("*"))
        if p.is_file() and not is_build_artifact(p) and p.parts[len(PACKAGE_DIR.parts)] != "vllm"
    ]


def copy_package(dest: Path, *, with_vllm: bool) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skip = {n for n in names if is_build_artifact(Path(n))}
        if not with_vllm and Path(directory) == PACKAGE_DIR:
            skip.add("vllm")
        return skip

    # symlinks=False copies what a link points to: sse.py links to plugins/module_utils/sse.py, outside
    # the build context, where a copied link would dangle.
    shutil.copytree(PACKAGE_DIR, dest, ignore=ignore, symlinks=False)


def write_zipapp(path: Path, module: str) -> None:
    """A single-file executable: ``#!/usr/bin/env python3`` + a zip carrying ascend_sim.

    It works wherever only this one file is bind-mounted (vLLM containers get
    /usr/local/bin/npu-smi and .../hccn_tool that way), with any python3 >= 3.9 on PATH.
    The zip is deterministic (fixed timestamps), so unchanged sources give identical bytes.
    """
    if not (PACKAGE_DIR / f"{module}.py").exists():
        say(f"  warning: sim/ascend_sim/{module}.py does not exist yet: {path.name} will fail when run")
    main = f"import sys\n\nfrom ascend_sim.{module} import main\n\nsys.exit(main())\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".zip")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)

        add("__main__.py", main.encode())
        for source in sorted(PACKAGE_DIR.glob("*.py")):
            add(f"ascend_sim/{source.name}", source.read_bytes())
    path.write_bytes(b"#!/usr/bin/env python3\n" + tmp.read_bytes())
    tmp.unlink()
    path.chmod(0o755)
