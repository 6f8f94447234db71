"""build: the rootfs, node and vLLM images, each rebuilt only when its input hash changed."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ascend_sim_host.config import (
    BASE_IMAGE,
    BASE_PACKAGES,
    CACHE_DIR,
    CAPFILTER,
    IMAGES_DIR,
    LABEL_INPUTS,
    NODE_IMAGE,
    PIP_PLATFORMS,
    ROOT,
    VLLM_IMAGE,
    VLLM_TARBALL,
)
from ascend_sim_host.inputs import hash_paths, image_id, image_label, image_size, input_hashes
from ascend_sim_host.package import copy_package, write_zipapp
from ascend_sim_host.shell import SimError, Timer, ensure_engine, parallel, run, say


def mib(n: int) -> str:
    return f"{n / 1048576:.0f} MiB"


def build_base(wanted: str) -> None:
    say(f"  rootfs: debootstrap --variant=minbase bookworm (+{BASE_PACKAGES}) -> docker import {BASE_IMAGE}")
    rootfs = subprocess.Popen([str(IMAGES_DIR / "rootfs.sh"), "-", BASE_PACKAGES], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [
            "docker",
            "import",
            "--change",
            f"LABEL {LABEL_INPUTS}={wanted}",
            "--change",
            'CMD ["/bin/bash"]',
            "-",
            BASE_IMAGE,
        ],
        stdin=rootfs.stdout,
        capture_output=True,
        text=True,
    )
    assert rootfs.stdout is not None
    rootfs.stdout.close()
    if rootfs.wait() != 0:
        raise SimError("building the rootfs failed (debootstrap output above)")
    if imported.returncode != 0:
        raise SimError(f"docker import failed: {imported.stderr.strip()}")


def pip_python() -> list[str]:
    for python in (sys.executable, str(ROOT / ".venv" / "bin" / "python")):
        if python and run([python, "-m", "pip", "--version"], check=False).returncode == 0:
            return [python]
    raise SimError("no pip found (install python3-pip) to fetch the vLLM image's Python packages")


def pip_site_packages() -> Path:
    """The vLLM image's Python packages, installed for CPython 3.11 into a cached folder."""
    requirements = IMAGES_DIR / "vllm" / "requirements.txt"
    target = CACHE_DIR / f"pip-{hash_paths(requirements)[:16]}"
    if (target / ".complete").exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix="pip-", dir=CACHE_DIR))
    cmd = [*pip_python(), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    cmd += ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    for platform in (*PIP_PLATFORMS, "any"):
        cmd += ["--platform", platform]
    cmd += ["--target", str(tmp / "site-packages"), "-r", str(requirements)]
    say("  pip: the vLLM image's Python packages (requirements.txt) for CPython 3.11")
    res = run(cmd, check=False)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SimError(f"pip install failed:\n{res.stderr.strip()}")
    # Console scripts (uvicorn, fastapi, httpx) go to /usr/local/bin with Debian's python3.
    scripts = tmp / "site-packages" / "bin"
    if scripts.is_dir():
        shutil.move(str(scripts), tmp / "bin")
        for script in (tmp / "bin").iterdir():
            lines = script.read_text(encoding="utf-8").splitlines(keepends=True)
            if lines and lines[0].startswith("#!"):
                lines[0] = "#!/usr/bin/python3\n"
            script.write_text("".join(lines), encoding="utf-8")
            script.chmod(0o755)
    else:
        (tmp / "bin").mkdir()
    (tmp / ".complete").touch()
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def docker_build(context: Path, tag: str, wanted: str, no_cache: bool) -> None:
    cmd = ["docker", "build", "-q", "-t", tag, "--label", f"{LABEL_INPUTS}={wanted}"]
    cmd += ["--build-arg", f"BASE={BASE_IMAGE}"]
    if no_cache:
        cmd.append("--no-cache")
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: no buildx plugin needed
    res = run([*cmd, str(context)], check=False, env=env)
    if res.returncode != 0:
        raise SimError(f"docker build {tag} failed:\n{(res.stdout + res.stderr).strip()[-3000:]}")


def build_vllm(wanted: str, site: Path, no_cache: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="ctx-vllm-", dir=CACHE_DIR) as tmp:
        ctx = Path(tmp)
        shutil.copytree(IMAGES_DIR / "vllm", ctx, dirs_exist_ok=True)
        shutil.copytree(site / "site-packages", ctx / "site-packages")
        shutil.copytree(site / "bin", ctx / "files" / "usr" / "local" / "bin", dirs_exist_ok=True)
        copy_package(ctx / "ascend_sim", with_vllm=True)
        docker_build(ctx, VLLM_IMAGE, wanted, no_cache)


def build_node(wanted: str, no_cache: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="ctx-node-", dir=CACHE_DIR) as tmp:
        ctx = Path(tmp)
        shutil.copytree(IMAGES_DIR / "node", ctx, dirs_exist_ok=True)
        shutil.copy2(CAPFILTER, ctx / "runc-capfilter")
        copy_package(ctx / "ascend_sim", with_vllm=False)
        write_zipapp(ctx / "bin" / "npu-smi", "npu_smi")
        write_zipapp(ctx / "bin" / "hccn_tool", "hccn_tool")
        docker_build(ctx, NODE_IMAGE, wanted, no_cache)


def save_tarball(quiet: bool = False) -> bool:
    """``docker save`` the vLLM image to VLLM_TARBALL unless it already holds this image."""
    wanted = image_id(VLLM_IMAGE)
    stamp = VLLM_TARBALL.with_suffix(".tar.id")
    if VLLM_TARBALL.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return False
    if not quiet:
        say(f"  docker save {VLLM_IMAGE} -> {VLLM_TARBALL}")
    tmp = VLLM_TARBALL.with_suffix(f".tar.{os.getpid()}.tmp")
    run(["docker", "save", "-o", str(tmp), VLLM_IMAGE])
    tmp.rename(VLLM_TARBALL)
    stamp.write_text(f"{wanted}\n")
    return True


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time on this machine (parallel `up`s, test runs)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / "build.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("build: waiting for another build on this machine to finish")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build(*, force: bool = False, no_cache: bool = False, quiet: bool = False) -> bool:
    """Build what is missing or stale; returns True if anything was built."""
    ensure_engine()
    with build_lock():
        return _build(force=force, no_cache=no_cache, quiet=quiet)


def _build(*, force: bool, no_cache: bool, quiet: bool) -> bool:
    total = Timer()
    hashes = input_hashes()
    stale = {
        "base": force or image_label(BASE_IMAGE) != hashes["base"],
        "node": force or image_label(NODE_IMAGE) != hashes["node"],
        "vllm": force or image_label(VLLM_IMAGE) != hashes["vllm"],
    }
    if not any(stale.values()):
        saved = save_tarball(quiet=quiet)
        if not quiet:
            say(f"build: images up to date ({NODE_IMAGE}, {VLLM_IMAGE}){'; tarball saved' if saved else ''} [{total}]")
        return saved
    say("build: " + ", ".join(name for name, s in stale.items() if s) + " out of date")

    def base_step() -> str:
        if not stale["base"]:
            return "reused"
        t = Timer()
        build_base(hashes["base"])
        return str(t)

    def pip_step() -> tuple[Path, str]:
        t = Timer()
        return pip_site_packages(), str(t)

    # The rootfs (debootstrap: CPU and mirror bound) and pip (PyPI) overlap.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        base_f = pool.submit(base_step)
        pip_f = pool.submit(pip_step) if stale["vllm"] else None
        base_time = base_f.result()
        site, pip_time = pip_f.result() if pip_f else (None, "skipped")
    say(f"  rootfs {base_time}; pip {pip_time}")

    def node_step(_: object) -> str:
        t = Timer()
        build_node(hashes["node"], no_cache)
        return f"node image {t}"

    def vllm_step(_: object) -> str:
        t = Timer()
        assert site is not None
        build_vllm(hashes["vllm"], site, no_cache)
        return f"vLLM image {t}"

    steps = []
    if stale["node"] or stale["base"]:
        steps.append(node_step)
    if stale["vllm"] or stale["base"]:
        if site is None:
            site = pip_site_packages()
        steps.append(vllm_step)
    say("  docker build " + " and ".join(s.__name__.split("_")[0] for s in steps) + " (in parallel)")
    say("  " + "; ".join(parallel(lambda step: step(None), steps)))
    t = Timer()
    save_tarball()
    say(f"  tarball {t}")
    # Earlier builds' images, now untagged (the tagged ones keep their layer cache).
    run(["docker", "image", "prune", "-f", "--filter", f"label={LABEL_INPUTS}"], check=False)
    size = VLLM_TARBALL.stat().st_size
    say(
        f"build: done in {total}: {NODE_IMAGE} {mib(image_size(NODE_IMAGE))}, {VLLM_IMAGE} "
        f"{mib(image_size(VLLM_IMAGE))}, tarball {mib(size)} ({VLLM_TARBALL})"
    )
    return True


def cmd_build(args: argparse.Namespace) -> int:
    build(force=args.force, no_cache=args.no_cache)
    return 0
