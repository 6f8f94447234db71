# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped catalogue's recipes, and which one (and which image) a deployment uses.

A recipe is the set of scenarios written for one vLLM-Ascend version (catalogue/recipes/*.yml).
A newer recipe ``extends`` an older one and lists only what changed: its hardware settings,
environment and scenarios are merged over the older recipe's entry by entry (``null`` removes
a key), and ``withdrawn`` removes scenarios with the reason an operator will be shown.

Which recipe: ``ascend_recipe`` when set; otherwise the newest recipe that is not newer than
the image tag's version (``v0.23.0-a3`` -> 0.23.0); a tag that is no version gets the newest
recipe, with a warning. Which image: ``ascend_vllm_image`` when set; otherwise
``<mirror><repository>:<tag>``, the tag defaulting to the one the recipe names for the hardware.
Nothing here imports Ansible or reads files: the catalogue arrives as plain data.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Tuple

from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import (
    CoerceError,
    HostView,
    deep_merge,
    to_mapping,
    to_str,
)

RECIPE_KEYS = ("name", "vllm_ascend", "extends", "withdrawn", "hardware", "env", "scenarios")
HARDWARE_KEYS = ("image_tag", "env", "container")
CONTAINER_KEYS = ("ipc_mode", "shm_size", "driver_mounts")
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
# vLLM-Ascend tags its images v<version>[rcN][-a3|-openeuler|...]; another registry's own tag
# (a mirror's "0.1.0", a site's "2026-05") says nothing about the vLLM-Ascend inside.
_TAG_RE = re.compile(r"^v\d+\.\d+")
# Tags that only stand for "fill me in": deploying one would pull nothing or the wrong thing.
_PLACEHOLDER_RE = re.compile(r"change[-_]?me|todo|fixme|xxx|placeholder|<.*>|your[-_]", re.IGNORECASE)


class Recipe(NamedTuple):
    name: str
    version: Tuple[int, ...]
    hardware: Dict[str, Dict[str, Any]]
    env: Dict[str, Any]
    scenarios: Dict[str, Any]
    withdrawn: Dict[str, str]


def version_of(text: str) -> Optional[Tuple[int, ...]]:
    """``(major, minor, patch)`` of a version or tag text (``v0.23.0-a3``, ``0.21.0rc1``)."""
    match = _VERSION_RE.match(text.strip())
    if not match:
        return None
    return tuple(int(part or 0) for part in match.groups())


def _check_keys(entry: Mapping[str, Any], allowed: Tuple[str, ...], what: str) -> None:
    unknown = [str(k) for k in entry if k not in allowed]
    if unknown:
        raise CoerceError(f"{what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(allowed)})")


def resolve_recipes(raw: Mapping[str, Any]) -> Dict[str, Recipe]:
    """Every recipe of the catalogue with its ``extends`` chain merged in. Raises
    ``CoerceError`` naming the recipe for a malformed catalogue (a bug of the collection)."""
    resolved: Dict[str, Recipe] = {}

    def resolve(name: str, chain: List[str]) -> Recipe:
        if name in resolved:
            return resolved[name]
        if name in chain:
            raise CoerceError(f"recipe 'extends' loop: {' -> '.join([*chain, name])}")
        if name not in raw:
            raise CoerceError(f"no recipe {name!r} (known: {', '.join(sorted(raw))})")
        entry = to_mapping(raw[name])
        _check_keys(entry, RECIPE_KEYS, f"recipe {name}")
        for hardware, settings in to_mapping(entry.get("hardware")).items():
            _check_keys(to_mapping(settings), HARDWARE_KEYS, f"recipe {name} hardware {hardware}")
            _check_keys(to_mapping(settings.get("container")), CONTAINER_KEYS, f"recipe {name} {hardware} container")
        version = version_of(str(entry.get("vllm_ascend", "")))
        if version is None:
            raise CoerceError(f"recipe {name}: vllm_ascend {entry.get('vllm_ascend')!r} is not a version")
        parent = entry.get("extends")
        base = resolve(to_str(parent), [*chain, name]) if parent else Recipe(name, version, {}, {}, {}, {})
        scenarios = dict(base.scenarios)
        for scenario, delta in to_mapping(entry.get("scenarios")).items():
            if delta is None:
                scenarios.pop(scenario, None)
            else:
                scenarios[scenario] = deep_merge(to_mapping(scenarios.get(scenario)), to_mapping(delta))
        withdrawn = {**base.withdrawn, **{str(k): str(v) for k, v in to_mapping(entry.get("withdrawn")).items()}}
        for scenario in withdrawn:
            scenarios.pop(scenario, None)
        resolved[name] = Recipe(
            name=name,
            version=version,
            hardware=deep_merge(base.hardware, to_mapping(entry.get("hardware"))),
            env=deep_merge(base.env, to_mapping(entry.get("env"))),
            scenarios=scenarios,
            withdrawn=withdrawn,
        )
        return resolved[name]

    for name in raw:
        resolve(str(name), [])
    return resolved


def _tag_of(image: str) -> str:
    """The tag of an image reference (``registry:5000/repo:tag`` -> ``tag``; none -> ``latest``)."""
    reference = image.split("@", 1)[0]
    sep, tag = reference.rpartition(":")[1:]
    return tag if sep and "/" not in tag else "latest"


class ImageChoice(NamedTuple):
    recipe: Recipe
    image: str
    why: str


def choose(view: HostView, recipes: Mapping[str, Recipe], hardware: str) -> Optional[ImageChoice]:
    """The recipe and the image of the deployment, as the host of ``view`` sees them, and why."""
    issues, newest = view.issues, max(recipes.values(), key=lambda r: r.version)
    named = view.get("ascend_recipe", to_str, required=False)
    if named and named not in recipes:
        issues.error(view.name, "ascend_recipe", f"no recipe {named!r} (known: {', '.join(sorted(recipes))})")
        return None
    image = view.get("ascend_vllm_image", to_str, required=False)
    tag = _tag_of(image) if image else view.get("ascend_vllm_image_tag", to_str, required=False)
    if not tag:
        recipe = recipes[named] if named else newest
        tag = to_str(recipe.hardware.get(hardware, {}).get("image_tag") or "")
        if not tag:
            issues.error(view.name, "ascend_vllm_image_tag", f"recipe {recipe.name} names no image for {hardware}")
            return None
        why = f"{'ascend_recipe' if named else 'the newest recipe'}; image tag {tag} is the one it names for {hardware}"
    else:
        recipe, why = _recipe_for_tag(
            view, recipes, named, tag, "ascend_vllm_image" if image else "ascend_vllm_image_tag"
        )
    if not image:
        mirror = view.get("ascend_vllm_image_mirror", to_str, required=False) or ""
        repository = view.get("ascend_vllm_image_repository", to_str)
        image = f"{mirror}{repository}:{tag}"
    tag_variable = "ascend_vllm_image" if view.has("ascend_vllm_image") else "ascend_vllm_image_tag"
    if _PLACEHOLDER_RE.search(tag):
        # An error, not a warning: no registry or tarball holds such an image, so the run would
        # stop at the image step after host_tuning had already changed the hosts.
        issues.error(
            view.name,
            tag_variable,
            f"the image tag {tag!r} looks like a placeholder, not a release: nothing can pull it; "
            "set the vLLM-Ascend release you validated (e.g. v0.23.0-a3 on A3, v0.23.0 on A2)",
        )
    elif tag == "latest":
        issues.warn(view.name, tag_variable, "the image tag 'latest' moves: pin the vLLM-Ascend release")
    return ImageChoice(recipe, image, why)


def _recipe_for_tag(
    view: HostView, recipes: Mapping[str, Recipe], named: Optional[str], tag: str, variable: str
) -> Tuple[Recipe, str]:
    newest = max(recipes.values(), key=lambda r: r.version)
    version = version_of(tag) if _TAG_RE.match(tag) else None
    if named:
        recipe = recipes[named]
        if version is not None and version[:2] != recipe.version[:2]:
            message = (
                f"recipe {named} (vLLM-Ascend {'.'.join(map(str, recipe.version))}) is chosen for an image "
                f"tagged {tag}: its flags may not match that release"
            )
            view.issues.warn(view.name, "ascend_recipe", message)
        return recipe, f"ascend_recipe (image tag {tag})"
    if version is None:
        message = (
            f"image tag {tag!r} is no vLLM-Ascend release tag (v<version>...): using the newest recipe, "
            f"{newest.name}; set ascend_recipe to choose"
        )
        view.issues.warn(view.name, variable, message)
        return newest, f"the newest recipe: image tag {tag} is no version"
    fitting = [r for r in recipes.values() if r.version <= version]
    if not fitting:
        oldest = min(recipes.values(), key=lambda r: r.version)
        message = f"image tag {tag} is older than every recipe; using the oldest, {oldest.name}"
        view.issues.warn(view.name, variable, message)
        return oldest, f"image tag {tag} predates every recipe"
    recipe = max(fitting, key=lambda r: r.version)
    return recipe, f"image tag {tag} (vLLM-Ascend {'.'.join(map(str, version))})"


def scenario_catalogue(view: HostView, recipe: Recipe) -> Dict[str, Any]:
    """The recipe's scenarios with the site's ``ascend_scenarios`` added (same name: replaced)."""
    site = view.get("ascend_scenarios", to_mapping, required=False) or {}
    return {**recipe.scenarios, **site}


def model_catalogue(view: HostView, shipped: Mapping[str, Any]) -> Dict[str, Any]:
    """models.yml with the site's ``ascend_models`` added (same name: replaced)."""
    site = view.get("ascend_models", to_mapping, required=False) or {}
    return {**shipped, **site}
