"""A fake host root for ascend.vllm.host_tuning_info: /proc/sys, /sys, /etc and /run in a directory.

The tests run as root, and access(2) lets root write a file whatever its mode: only a read-only
mount stops it, as on the simulated nodes. So a file is made read-only here by listing it, and
the tests patch ``host_tuning.writable`` with :meth:`FakeHost.writable`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Set

# What the role writes at the top of its sysctl file, and what a host's own lines look like.
SYSCTL_HEADER = (
    "# Managed by Ansible (ascend.vllm.host_tuning): kernel parameters for vLLM-Ascend.\n"
    "# Keys set here are rewritten on every run; change host_tuning_sysctls instead.\n"
)
GOVERNORS_ARM64_CPPC = "conservative ondemand userspace powersave performance schedutil"


class FakeHost:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.read_only: Set[str] = set()

    def path(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def write(self, path: str, content: str, writable: bool = True) -> Path:
        real = self.path(path)
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_text(content, encoding="utf-8")
        if not writable:
            self.read_only.add(str(real))
        return real

    def writable(self, real: str) -> bool:
        return os.path.exists(real) and real not in self.read_only

    def sysctl(self, key: str, value: str, writable: bool = True) -> None:
        self.write("/proc/sys/" + key.replace(".", "/"), value + "\n", writable)

    def kernel(self, release: str) -> None:
        self.write("/proc/sys/kernel/osrelease", release + "\n", writable=False)

    def systemd(self) -> None:
        self.write("/proc/1/comm", "systemd\n", writable=False)
        self.path("/run/systemd/system").mkdir(parents=True, exist_ok=True)

    def cpufreq(
        self, governors: Dict[int, str], offered: Optional[str] = GOVERNORS_ARM64_CPPC, writable: bool = True
    ) -> None:
        """CPU N at governor governors[N]; CPU 0's driver offers ``offered``. Every CPU also has
        a ``cpuidle`` directory, and there is a ``cpufreq`` policy directory, as on a real host."""
        self.path("/sys/devices/system/cpu/cpufreq/policy0").mkdir(parents=True, exist_ok=True)
        for cpu, governor in governors.items():
            self.path(f"/sys/devices/system/cpu/cpu{cpu}/cpuidle").mkdir(parents=True, exist_ok=True)
            base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
            self.write(f"{base}/scaling_governor", governor + "\n", writable)
            if offered is not None:
                self.write(f"{base}/scaling_available_governors", offered + "\n", writable=False)

    def cpus_without_cpufreq(self, count: int) -> None:
        for cpu in range(count):
            self.path(f"/sys/devices/system/cpu/cpu{cpu}/cpuidle").mkdir(parents=True, exist_ok=True)

    def unit(self, name: str, content: str, enabled: bool = True, targets: Iterable[str] = ("multi-user",)) -> Path:
        real = self.write(f"/etc/systemd/system/{name}", content)
        real.chmod(0o644)
        if enabled:
            for target in targets:
                link = self.path(f"/etc/systemd/system/{target}.target.wants/{name}")
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(f"/etc/systemd/system/{name}")
        return real
