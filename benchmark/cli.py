"""``ood-bench``: the Hydra app. Bad names and missing data end in one clear message."""

from __future__ import annotations

import fnmatch
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("pair", "backbone", "detector", "data", "table")

log = logging.getLogger("ood-bench")

# sweep folder names come from the overrides; nested options (pytorch_ood/msp) must not nest them
OmegaConf.register_new_resolver("path_safe", lambda s: str(s).replace("/", "-"), replace=True)


def group_options(group: str) -> list[str]:
    """Every selectable option of a config group, nested ones as ``sub/name``."""
    root = CONFIG_DIR / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def is_suite(group: str, option: str) -> bool:
    """A suite only lists other options in its defaults (e.g. detector=pytorch_ood/all)."""
    import yaml

    body = yaml.safe_load((CONFIG_DIR / group / f"{option}.yaml").read_text()) or {}
    return "defaults" in body and not (set(body) - {"defaults"})


def expand_patterns(args: list[str]) -> list[str]:
    """``detector=pytorch_ood/*`` -> every single (non-suite) option matching, comma-joined."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if sep and group in GROUPS and "*" in value and "(" not in value:
            matched: list[str] = []
            for pattern in value.split(","):
                matched += [o for o in group_options(group)
                            if fnmatch.fnmatchcase(o, pattern) and not is_suite(group, o)]
            arg = f"{key}={','.join(dict.fromkeys(matched))}" if matched else arg
        out.append(arg)
    return out


def check_overrides(args: list[str]) -> str | None:
    """A message listing valid options when a group override names one that does not exist."""
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key not in GROUPS or "(" in value:
            continue
        valid = group_options(key)
        wrong = [v for v in value.split(",") if v and v not in valid]
        if wrong:
            return (f"ood-bench: error: no {key} named {', '.join(map(repr, wrong))}.\n"
                    f"Valid {key} options: {', '.join(valid)}")
    return None


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from adapters.base import DetectorError
    from benchmark.backbones import BackboneError
    from benchmark.data import DataError
    from benchmark.run import run
    from benchmark.summary import print_summary

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        frame = run(cfg, out_dir)
    except (DataError, BackboneError, DetectorError) as exc:
        log.error("%s", exc)
        print(f"ood-bench: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print_summary(frame, out_dir)


def main() -> None:
    sys.argv[1:] = expand_patterns(sys.argv[1:])
    problem = check_overrides(sys.argv[1:])
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    app()


if __name__ == "__main__":
    main()
