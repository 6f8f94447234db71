"""Where the simulator's files are, what its images, labels and clusters are called."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

SIM_DIR = Path(__file__).resolve().parent.parent
ROOT = SIM_DIR.parent
IMAGES_DIR = SIM_DIR / "images"
PACKAGE_DIR = SIM_DIR / "ascend_sim"
CAPFILTER = ROOT / "tools" / "runc-capfilter"
CACHE_DIR = ROOT / ".cache" / "sim"

VERSION = "0.1.0"
# Another tag for the images (and their tarball) than the version: two checkouts that change
# the simulator (git worktrees, parallel CI jobs on one engine) then build and run their own
# images instead of overwriting each other's. Inventories made by `ascend-sim inventory` name it.
TAG = os.environ.get("ASCEND_SIM_TAG") or VERSION
BUILD_FORMAT = "1"  # bump when the way images are assembled here changes
BASE_IMAGE = "ascend-sim/rootfs:bookworm"
BASE_PACKAGES = "python3,procps,iproute2,iputils-ping"
NODE_IMAGE = f"ascend-sim/node:{TAG}"
VLLM_IMAGE = f"ascend-sim/vllm-ascend:{TAG}"
VLLM_TARBALL = CACHE_DIR / f"vllm-ascend-{TAG}.tar"
PIP_PLATFORMS = ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

LABEL_INPUTS = "ascend-sim.inputs"
LABEL_CLUSTER = "ascend-sim.cluster"
LABEL_INDEX = "ascend-sim.node-index"
LABEL_PROFILE = "ascend-sim.profile"
DEFAULT_PREFIX = "ascend-sim"
PROFILES = ("a3", "a2")
SUBNET_POOL = ipaddress.IPv4Network("172.30.0.0/16")
# The default cluster's subnet is fixed: inventories/sim names its nodes' addresses (the plan
# needs each PD host's IP, as on a real site). Other clusters take a free /24 of the pool.
DEFAULT_SUBNET = ipaddress.IPv4Network("172.30.0.0/24")
NODE_IP_OFFSET = 10  # node i gets .(10 + i)
READY_TIMEOUT = 180.0
ENGINE_HINT = "docker engine not running: run tools/docker-engine.sh"
