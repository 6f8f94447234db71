"""What every kind of fault of ``ascend-sim-fault`` (``faults.py``) shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ascend_sim import state as st

DEFAULT_VERSION_INFO = "/usr/local/Ascend/driver/version.info"


class FaultError(Exception):
    """A fault that cannot be applied; ``ascend-sim-fault`` prints it and exits 1."""


def version_info_path() -> Path:
    return Path(os.environ.get("ASCEND_SIM_VERSION_INFO") or DEFAULT_VERSION_INFO)


def change_state(directory: Optional[Path], fn: Callable[[Dict[str, Any]], str]) -> str:
    """Apply ``fn`` under the state lock; ``fn`` returns the line to print."""
    message: List[str] = []

    def mutate(state: Dict[str, Any]) -> None:
        message.append(fn(state))

    try:
        st.update_state(mutate, directory)
    except st.StateError as exc:
        raise FaultError(str(exc)) from None
    return message[0]
