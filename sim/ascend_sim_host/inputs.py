"""Input hashes: an image is reused while the hash of its inputs, a label on it, matches."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ascend_sim_host.config import BASE_PACKAGES, BUILD_FORMAT, CAPFILTER, IMAGES_DIR, LABEL_INPUTS, PACKAGE_DIR
from ascend_sim_host.package import is_build_artifact, node_package_files
from ascend_sim_host.shell import docker, run


def hash_paths(*items: Path | str | list[Path]) -> str:
    """sha256 over strings, files, directory trees (names, exec bits, contents)."""
    digest = hashlib.sha256()
    for item in items:
        if isinstance(item, str):
            digest.update(b"s\0" + item.encode() + b"\0")
            continue
        if isinstance(item, list):
            files, top = item, PACKAGE_DIR
        elif item.is_dir():
            files, top = sorted(p for p in item.rglob("*") if p.is_file() and not is_build_artifact(p)), item
        else:
            files, top = [item], item.parent
        for path in files:
            rel = path.relative_to(top).as_posix()
            mode = "x" if os.access(path, os.X_OK) else "-"
            digest.update(f"f\0{rel}\0{mode}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def input_hashes() -> dict[str, str]:
    base = hash_paths("base", BUILD_FORMAT, BASE_PACKAGES, IMAGES_DIR / "rootfs.sh")
    node = hash_paths("node", BUILD_FORMAT, base, IMAGES_DIR / "node", node_package_files(), CAPFILTER)
    vllm = hash_paths("vllm", BUILD_FORMAT, base, IMAGES_DIR / "vllm", PACKAGE_DIR)
    return {"base": base, "node": node, "vllm": vllm}


def image_label(image: str) -> str | None:
    res = run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image], check=False)
    if res.returncode != 0:
        return None
    labels = json.loads(res.stdout.strip() or "null") or {}
    return labels.get(LABEL_INPUTS)


def image_id(image: str) -> str | None:
    res = run(["docker", "image", "inspect", "--format", "{{.Id}}", image], check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def image_size(image: str) -> int:
    out = docker("image", "inspect", "--format", "{{.Size}}", image, check=False)
    return int(out) if out.isdigit() else 0
