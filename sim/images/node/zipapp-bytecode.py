"""Add this interpreter's byte code to zipapps (npu-smi, hccn_tool), in place.

    zipapp-bytecode.py ZIPAPP...

Run in the node image's build by the image's own python3: the one that runs the zipapps in
the nodes and in the vLLM containers that bind-mount them (same Debian python3). zipimport
cannot cache what it compiles, so without byte code every run -- one per npu-smi or hccn_tool
query -- compiles the simulator's modules again (~10 ms). The .pyc are "unchecked hash" ones
(PEP 552): zipimport loads them without comparing them to the sources, which stay beside them
for tracebacks and for another Python, whose zipimport rejects the byte code by its magic
number and compiles the sources as before. Standard library only.
"""

from __future__ import annotations

import importlib.util
import io
import marshal
import sys
import zipfile
from pathlib import Path

UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, not checked against the source


def unchecked_pyc(source: bytes, filename: str) -> bytes:
    """``source`` as a .pyc: magic number, flags, the source's hash, the marshalled code."""
    code = compile(source, filename, "exec", dont_inherit=True)
    flags = UNCHECKED_HASH.to_bytes(4, "little")
    return importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)


def add_bytecode(path: Path) -> int:
    """Rewrite the zipapp ``path`` with a .pyc beside each .py; returns how many it added."""
    # A zipapp is a "#!" line followed by a zip; zipfile reads the zip behind it.
    shebang = path.read_bytes().partition(b"\n")[0] + b"\n"
    with zipfile.ZipFile(path) as old:
        entries = [(info, old.read(info)) for info in old.infolist()]
    added = 0
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as new:
        for info, data in entries:
            new.writestr(info, data)
            if info.filename.endswith(".py"):
                pyc = zipfile.ZipInfo(info.filename + "c", date_time=info.date_time)
                pyc.compress_type = zipfile.ZIP_DEFLATED
                pyc.external_attr = info.external_attr
                # The file name zipimport gives the module when it compiles the source itself,
                # so that tracebacks read as before.
                new.writestr(pyc, unchecked_pyc(data, f"{path}/{info.filename}"))
                added += 1
    path.write_bytes(shebang + buffer.getvalue())
    return added


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    for name in argv:
        print(f"{name}: byte code of {add_bytecode(Path(name))} module(s) added")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
