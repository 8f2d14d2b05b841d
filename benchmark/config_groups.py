"""The one place that lists and validates config options (``configs/<group>/<option>.yaml``).

Options come from the project's ``configs/`` and from every folder the user adds to Hydra's
search path on the command line (``--config-dir DIR``, ``-cd DIR``, or
``hydra.searchpath=[file:///DIR]``), so ``pair=mine`` from a user's own config folder is as
valid as a shipped one.
"""

from __future__ import annotations

import fnmatch
import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from benchmark.paths import REPO

CONFIG_DIR = REPO / "configs"
GROUPS = ("pair", "backbone", "detector", "data", "table", "novelty")


class ConfigError(ValueError):
    """A config option that does not exist or cannot be read; the message lists valid ones."""


def _searchpath_dirs(value: str) -> list[Path]:
    """Folders of a ``hydra.searchpath=[...]`` value (``file://`` and ``pkg://`` entries)."""
    dirs = []
    for item in value.strip().strip("[]").split(","):
        item = item.strip().strip("'\"")
        if item.startswith("file://"):
            dirs.append(Path(item.removeprefix("file://")).expanduser())
        elif item.startswith("pkg://"):
            module = item.removeprefix("pkg://").replace("/", ".")
            spec = importlib.util.find_spec(module)
            if spec is not None and spec.submodule_search_locations:
                dirs += [Path(p) for p in spec.submodule_search_locations]
        elif item:
            dirs.append(Path(item).expanduser())
    return dirs


def search_dirs(args: Sequence[str] = ()) -> list[Path]:
    """The project's config folder, then the user's folders named in command-line ``args``."""
    dirs = [CONFIG_DIR]
    it = iter(args)
    for arg in it:
        if arg in ("--config-dir", "-cd"):
            dirs.append(Path(next(it, ".")).expanduser())
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]).expanduser())
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            dirs += _searchpath_dirs(arg.split("=", 1)[1])
    return list(dict.fromkeys(d.resolve() for d in dirs))


def runtime_dirs() -> list[Path]:
    """The config folders of the running Hydra app: the project's, then every folder on its
    search path (``--config-dir``, ``hydra.searchpath``); only the project's outside an app."""
    from hydra.core.hydra_config import HydraConfig

    dirs = [CONFIG_DIR]
    if HydraConfig.initialized():
        for source in HydraConfig.get().runtime.config_sources:
            if source.schema in ("file", "pkg") and source.path:
                dirs += _searchpath_dirs(f"{source.schema}://{source.path}")
    return list(dict.fromkeys(d.resolve() for d in dirs))


def group_options(group: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> list[str]:
    """Every selectable option of a config group, nested ones as ``sub/name``."""
    found: set[str] = set()
    for d in dirs:
        root = Path(d) / group
        if root.is_dir():
            found |= {str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")}
    return sorted(found)


def option_file(group: str, option: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> Path:
    """The YAML file of ``group=option`` (first folder of the search path that has it)."""
    for d in dirs:
        path = Path(d) / group / f"{option}.yaml"
        if path.exists():
            return path
    valid = ", ".join(group_options(group, dirs))
    raise ConfigError(f"no {group} named {option!r}. Valid {group} options: {valid}")


def read_option(group: str, option: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> dict[str, Any]:
    """The parsed YAML of ``group=option``."""
    path = option_file(group, option, dirs)
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc


def is_suite(group: str, option: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> bool:
    """A suite only lists other options in its defaults (e.g. detector=pytorch_ood/all)."""
    body = read_option(group, option, dirs)
    return "defaults" in body and not (set(body) - {"defaults"})


def detector_entries(option: str, dirs: Sequence[Path] = (CONFIG_DIR,)) -> dict[str, Any]:
    """``{detector id: {library, name, params}}`` of a single-detector option."""
    return dict(read_option("detector", option, dirs).get("detectors") or {})


def expand_patterns(args: list[str]) -> list[str]:
    """``detector=pytorch_ood/*`` -> every single (non-suite) option matching, comma-joined."""
    dirs = search_dirs(args)
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if sep and group in GROUPS and "*" in value and "(" not in value:
            matched: list[str] = []
            for pattern in value.split(","):
                matched += [o for o in group_options(group, dirs)
                            if fnmatch.fnmatchcase(o, pattern) and not is_suite(group, o, dirs)]
            arg = f"{key}={','.join(dict.fromkeys(matched))}" if matched else arg
        out.append(arg)
    return out


# Hydra launchers: the plugin each needs and the extra that installs it (README, "Sweeps at
# scale"); slurm and ray_cluster are the presets in configs/hydra/launcher/
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "launchers"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "launchers"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "launchers"),
    "slurm": ("hydra_plugins.hydra_submitit_launcher", "launchers"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
    "ray_cluster": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def launcher_problem(name: str, installed: Callable[[str], bool] = _installed) -> str | None:
    """What to install for ``hydra/launcher=<name>`` when its plugin is missing, else None."""
    if name not in LAUNCHER_PLUGINS:
        return None
    module, extra = LAUNCHER_PLUGINS[name]
    if installed(module):
        return None
    return (f"error: hydra/launcher={name} needs its Hydra plugin ({module}): "
            f"pip install -e '.[{extra}]' (README, 'Sweeps at scale')")


def check_overrides(args: list[str], prog: str = "ood-bench") -> str | None:
    """A message listing valid options when a group override names one that does not exist."""
    dirs = search_dirs(args)
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key == "hydra/launcher" and (problem := launcher_problem(value)):
            return f"{prog}: {problem}"
        if key not in GROUPS or "(" in value:
            continue
        valid = group_options(key, dirs)
        wrong = [v for v in value.split(",") if v and v not in valid]
        if wrong:
            return (f"{prog}: error: no {key} named {', '.join(map(repr, wrong))}.\n"
                    f"Valid {key} options: {', '.join(valid)}")
    problem = unknown_override(args, dirs)
    return f"{prog}: {problem}" if problem else None


# --------------------------------------------------------------------------- unknown keys

DETECTOR_KEYS = ("library", "name", "params", "search")


def _yaml_keys(group: str, dirs: Sequence[Path]) -> dict[str, set[str]]:
    """Keys the options of ``group`` define: top level (``""``) and one level down."""
    keys: dict[str, set[str]] = {"": set()}
    for option in group_options(group, dirs):
        body = read_option(group, option, dirs)
        for k, v in body.items():
            if k == "defaults":
                continue
            keys[""].add(k)
            if isinstance(v, dict):
                keys.setdefault(k, set()).update(v)
    return keys


def known_keys(dirs: Sequence[Path] = (CONFIG_DIR,)) -> dict[str, dict[str, set[str]]]:
    """Per checked section (``data``, ``backbone``): the keys some config defines."""
    from dataclasses import fields

    from benchmark.pipeline.backbones import Recipe

    backbone = _yaml_keys("backbone", dirs)
    backbone.setdefault("recipe", set()).update(f.name for f in fields(Recipe))
    return {"data": _yaml_keys("data", dirs), "backbone": backbone}


def _hint(key: str, valid: set[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return close[0] if close else None


CHECKED_BLOCKS = {"backbone": ("recipe", "input")}  # blocks whose own keys are checked too


def _unknown_at(path: list[str], schema: dict[str, dict[str, set[str]]]
                ) -> tuple[int, set[str]] | None:
    """Where the dotted ``path`` (``["data", "fit_sise"]``) leaves the known keys: the index
    of the unknown part and the keys valid at that level; None when known or not checked."""
    section = schema.get(path[0])
    if section is None or len(path) < 2:
        return None
    if path[1] not in section[""]:
        return 1, section[""]
    if len(path) >= 3 and path[1] in CHECKED_BLOCKS.get(path[0], ()):
        valid = section.get(path[1], set())
        return None if path[2] in valid else (2, valid)
    return None  # deeper keys (an architecture's params) are not checked


def _named(path: list[str], at: int, valid: set[str]) -> tuple[str, str | None]:
    """The unknown dotted key and the closest known one."""
    hint = _hint(path[at], valid)
    return ".".join(path[:at + 1]), ".".join(path[:at] + [hint]) if hint else None


def unknown_keys(cfg: dict[str, Any], dirs: Sequence[Path] = (CONFIG_DIR,)
                 ) -> list[tuple[str, str | None]]:
    """``(dotted key, closest known key)`` for every key under ``data`` and ``backbone`` that no
    config defines, and every detector entry key other than library/name/params/search."""
    schema = known_keys(dirs)
    paths = []
    for section in schema:
        for k, v in (cfg.get(section) or {}).items():
            paths.append([section, k])
            if isinstance(v, dict) and k in CHECKED_BLOCKS.get(section, ()):
                paths += [[section, k, sub] for sub in v]
    out = [_named(p, *found) for p in paths if (found := _unknown_at(p, schema))]
    for det_id, entry in (cfg.get("detectors") or {}).items():
        out += [_named(["detectors", str(det_id), k], 2, set(DETECTOR_KEYS))
                for k in entry or {} if k not in DETECTOR_KEYS]
    return out


def unknown_override(args: Sequence[str], dirs: Sequence[Path]) -> str | None:
    """A message for an override of a key that does not exist (``data.fit_sise=5``): Hydra
    refuses it too, but with exit code 1 and without the valid keys."""
    schema = known_keys(dirs)
    for arg in args:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            continue
        path = arg.split("=", 1)[0].split(".")
        found = _unknown_at(path, schema)
        if found:
            key, hint = _named(path, *found)
            return (f"error: no config key {key!r}"
                    + (f"; did you mean {hint!r}?" if hint else "")
                    + f"\nValid keys there: {', '.join(sorted(found[1]))}. "
                    f"(Add a new key with +{'.'.join(path)}=...)")
    return None
