# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catalogue that ships with the collection (catalogue/), read on the controller.

models.yml, defaults.yml and recipes/*.yml are versioned with the collection, so upgrading it
updates them; a site's inventory keeps only its choices. Read once per process.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Dict

import yaml

CATALOGUE_DIR = Path(__file__).resolve().parents[2] / "catalogue"


def _load(path: Path) -> Dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        data = yaml.safe_load(stream)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


@functools.lru_cache(maxsize=4)
def load_catalogue(directory: str = str(CATALOGUE_DIR)) -> Dict[str, Any]:
    """``{"models", "recipes", "defaults", "foreign", "serve_options"}`` from ``directory``.

    ``serve_options`` is vllm-serve-options.json: every option of ``vllm serve`` as the
    argument parser of vLLM 0.33.0 defines it, generated from that parser (see docs/plan.md,
    "Validation"); the plan checks every flag it writes against it.
    """
    root = Path(directory)
    defaults = _load(root / "defaults.yml")
    recipes = {}
    for path in sorted((root / "recipes").glob("*.yml")):
        recipe = _load(path)
        recipes[str(recipe.get("name", path.stem))] = recipe
    return {
        "models": _load(root / "models.yml")["models"],
        "recipes": recipes,
        "defaults": defaults["variables"],
        "foreign": list(defaults.get("foreign") or []),
        "serve_options": json.loads((root / "vllm-serve-options.json").read_text(encoding="utf-8")),
    }
