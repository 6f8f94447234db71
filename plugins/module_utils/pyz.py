# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Python package as one deterministic zip: the same sources always give the same bytes.

Python imports a package straight from a zip on ``PYTHONPATH`` (zipimport), so a service can be
shipped to a host as one file: one checksum decides whether anything changed, one copy installs
it, and symlinked sources (the proxy's ``sse.py``) are stored as the files they point to.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import List, Tuple

# The zip format's earliest date: every member gets it, so a checkout's mtimes change nothing.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def package_sources(package_dir: str) -> List[Tuple[str, str]]:
    """(path on disk, name in the zip) of every ``.py`` file of the package, sorted; the zip
    names start with the package's own directory name, so ``import <package>`` works."""
    root = os.path.realpath(package_dir)
    top = os.path.basename(root.rstrip("/"))
    found = []
    for current, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(current, name)
                found.append((path, os.path.join(top, os.path.relpath(path, root)).replace(os.sep, "/")))
    return sorted(found, key=lambda item: item[1])


def build_zip(package_dir: str) -> bytes:
    """The package's zip; raises ValueError when the directory holds no ``__init__.py``."""
    sources = package_sources(package_dir)
    if not any(name.count("/") == 1 and name.endswith("/__init__.py") for name in (entry[1] for entry in sources)):
        raise ValueError(f"{package_dir} is not a Python package (no __init__.py)")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in sources:
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as source:
                archive.writestr(info, source.read())
    return buffer.getvalue()
