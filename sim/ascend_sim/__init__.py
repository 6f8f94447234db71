"""Node-side device layer of the Ascend cluster simulator.

No NPU exists on a simulated node: the "driver" is a state directory (``state.py``) that the
fake ``npu-smi`` (``npu_smi.py``), the fake ``hccn_tool`` (``hccn_tool.py``), the fault CLI
(``faults.py``) and the simulated vLLM server all read and write. Standard library only; the
nodes run Debian bookworm's python3.11. ``sse.py`` is a symlink to the collection's SSE parser
(``plugins/module_utils/sse.py``); ``sim/ascend-sim build`` copies its content into the images.
"""
