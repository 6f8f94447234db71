# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NPUs of a host for the node exporter's textfile collector: ``python3 -m ascend_npu_exporter``.

Runs ``npu-smi info`` once, reads it with the collection's own parser (npu_smi.py, linked from
plugins/module_utils) and writes the Prometheus text of npu_metrics.py atomically to
``--output``. Started by the systemd timer the role ``monitoring`` installs; shipped as one zip.
"""
