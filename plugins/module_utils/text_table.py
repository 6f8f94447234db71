# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixed-width text tables for what playbooks show operators."""

from __future__ import annotations

from typing import Sequence


def format_rows(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """The header and each row as one line, columns padded to their widest cell."""
    table = [[str(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(cell) for cell in column) for column in zip(*table)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
