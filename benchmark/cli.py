"""The console scripts: ``ood-bench`` (runs), ``ood-bench-report`` (reports), ``ood-bench-tables``
(paper tables), ``ood-bench-novelty`` (novelty discovery).

Each is a thin function: check the command line (:mod:`benchmark.config_groups`), call one
producer, print where its output is. Bad input (a config option, data, a checkpoint, a detector
library, a table) ends in one message ``<prog>: error: ...`` and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from benchmark.config_groups import (
    CONFIG_DIR,
    ConfigError,
    check_overrides,
    expand_patterns,
    unknown_keys,
)

log = logging.getLogger("ood-bench")

# sweep folder names come from the overrides; nested options (pytorch_ood/msp) must not nest them
OmegaConf.register_new_resolver("path_safe", lambda s: str(s).replace("/", "-"), replace=True)


def fail(prog: str, message: object) -> NoReturn:
    """The one way a console script reports bad input: a message and exit code 2.

    File names that are not valid UTF-8 are written with backslash escapes (printing them as
    they are would end in an encoding traceback)."""
    text = str(message).encode("utf-8", "backslashreplace").decode("utf-8")
    log.error("%s", text)
    print(f"{prog}: error: {text}", file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def user_errors(prog: str) -> Iterator[None]:
    """Turn the harness's bad-input errors into :func:`fail` (anything else is a bug)."""
    from adapters.base import DetectorError
    from benchmark.pipeline.backbones import BackboneError
    from benchmark.pipeline.data import DataError
    from benchmark.studies.paper_tables import TableError

    try:
        yield
    except (DataError, BackboneError, DetectorError, ConfigError, TableError,
            FileNotFoundError) as exc:
        fail(prog, exc)


# --------------------------------------------------------------------------- ood-bench


def warn_unknown_keys(cfg: DictConfig) -> None:
    """Warn about keys no config defines (``+data.fit_sise=5`` is accepted by Hydra and does
    nothing): under ``data``, ``backbone`` and ``detectors``."""
    for key, hint in unknown_keys(OmegaConf.to_container(cfg, resolve=False)):
        message = f"unknown config key {key!r} (no shipped config has it; it has no effect)"
        if hint:
            message += f"; did you mean {hint!r}?"
        log.warning("%s", message)
        print(f"ood-bench: warning: {message}", file=sys.stderr)


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    from benchmark import jobs
    from benchmark.runner.resume import job_key
    from benchmark.runner.run import run
    from benchmark.runner.summary import print_summary

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    warn_unknown_keys(cfg)
    key = job_key(cfg)
    if cfg.get("resume", True) and jobs.is_complete(out_dir, key):
        print(f"ood-bench: {out_dir} already holds this job, complete; skipped (resume=false "
              "runs it again)")
        return
    jobs.started(out_dir, key)
    try:
        with user_errors("ood-bench"):
            try:
                frame = run(cfg, out_dir)
            except Exception as exc:
                jobs.finished(out_dir, key, exc)
                raise
    except KeyboardInterrupt:
        print(f"\nood-bench: interrupted; the detectors that finished are in "
              f"{out_dir / 'metrics.csv'}", file=sys.stderr)
        raise SystemExit(130) from None
    jobs.finished(out_dir, key)
    print_summary(frame, out_dir)


def resume_arguments(argv: list[str]) -> list[str]:
    """``--resume <sweep dir> [more overrides]`` as the command that made the sweep, into the
    same folder: its complete jobs are skipped (:mod:`benchmark.jobs`)."""
    from benchmark.jobs import MULTIRUN_FILE, sweep_overrides

    if len(argv) < 2:
        fail("ood-bench", "usage: ood-bench --resume <sweep folder> (the folder holding "
             f"{MULTIRUN_FILE})")
    folder = Path(argv[1])
    if not (folder / MULTIRUN_FILE).exists():
        fail("ood-bench", f"{folder} is not a sweep folder (no {MULTIRUN_FILE}); give the "
             "folder `ood-bench -m` printed (multirun/<date>/<time>)")
    task, hydra_args = sweep_overrides(folder)
    return ["-m", *task, *hydra_args, *argv[2:], f"hydra.sweep.dir={folder.resolve()}"]


def main() -> None:
    """``ood-bench [overrides]``: one run (or a sweep with ``-m``) of the selected detectors;
    ``ood-bench --resume <sweep dir>`` finishes an interrupted sweep."""
    if sys.argv[1:2] == ["--resume"]:
        sys.argv[1:] = resume_arguments(sys.argv[1:])
    sys.argv[1:] = expand_patterns(sys.argv[1:])
    problem = check_overrides(sys.argv[1:])
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    app()


# --------------------------------------------------------------------------- ood-bench-report


def _parse_pythons(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            fail("ood-bench-report", f"--python wants library=/path/to/python, got {item!r}")
        lib, path = item.split("=", 1)
        out[lib] = path
    return out


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ood-bench-report",
        description="One report comparing the libraries of a sweep, criterion by criterion.")
    p.add_argument("dirs", nargs="*", type=Path, help="sweep (multirun) or run directories")
    p.add_argument("--store", type=Path, metavar="DIR",
                   help="read the runs from this results store instead of folders")
    p.add_argument("--where", metavar="SQL",
                   help="with --store: only rows matching this DuckDB condition, e.g. "
                   "\"id_dataset = 'cifar10' AND backbone = 'resnet20'\"")
    p.add_argument("--out", type=Path, help="output folder (default results/<sweep name>)")
    p.add_argument("--ease", action="store_true", help="measure ease of use (minutes)")
    p.add_argument("--robustness", action="store_true", help="run the robustness probes")
    p.add_argument("--all", action="store_true", help="--ease and --robustness")
    p.add_argument("--html", action="store_true",
                   help="also write report.html: one self-contained page, tables sortable and "
                   "filterable, plots embedded")
    p.add_argument("--python", action="append", default=[], metavar="LIB=PYTHON",
                   help="interpreter that has LIB installed (ease of use, robustness)")
    p.add_argument("--repeats", type=int, default=3, help="import-time repetitions")
    p.add_argument("--offline", action="store_true", help="do not ask PyPI")
    p.add_argument("--probe-n-id", type=int, default=500)
    p.add_argument("--probe-n-ood", type=int, default=500)
    p.add_argument("--probe-fit-cap", type=int, default=2000)
    p.add_argument("--command", action="append", default=[],
                   help="the exact command that produced the runs (repeatable); listed at the "
                   "top of report.md instead of the lines rebuilt from Hydra's overrides")
    return p


def report_main(argv: list[str] | None = None) -> None:
    """``ood-bench-report <dirs> [--out DIR] [--ease] [--robustness]``: run the requested
    studies into the report folder, then write the report from the runs and the studies."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _report_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.dirs and args.store is None:
        parser.error("give run or sweep folders, or --store DIR")
    if args.where and args.store is None:
        parser.error("--where filters the results store: give --store DIR too")
    if args.store is not None and args.dirs:
        parser.error("give run or sweep folders, or --store DIR, not both")
    for d in args.dirs:
        if not d.exists():
            parser.error(f"{d} does not exist")
    from benchmark.report.build import build_report, default_out
    from benchmark.results import collect, collect_store

    if args.out is None and not args.dirs:
        parser.error("with --store, say where the report goes: --out DIR")
    out = args.out or default_out(args.dirs)
    pythons = _parse_pythons(args.python)
    with user_errors("ood-bench-report"):
        # no run there: the message comes before anything is written
        coll = collect_store(args.store, args.where) if args.store else collect(args.dirs)
        if args.all or args.ease:
            from benchmark.studies.ease.measure import write_ease

            write_ease(out, pythons, args.repeats, not args.offline, coll.rows)
        if args.all or args.robustness:
            from benchmark.studies.robustness.probes import ProbeSettings, write_robustness

            settings = ProbeSettings(n_id=args.probe_n_id, n_ood=args.probe_n_ood,
                                     fit_cap=args.probe_fit_cap)
            write_robustness(coll, out, settings, pythons)
        path = build_report(
            args.dirs, out, commands=args.command,
            report_command="ood-bench-report " + " ".join(shlex.quote(a) for a in argv),
            coll=coll, html=args.html)
    print(f"report: {path}")
    if args.html:
        print(f"page:   {path.with_suffix('.html')}")


def options_and_rest(args: list[str], group: str) -> tuple[list[str], list[str]]:
    """The options named by ``<group>=<name>`` arguments, and every other argument."""
    prefix = f"{group}="
    return ([a[len(prefix):] for a in args if a.startswith(prefix)],
            [a for a in args if not a.startswith(prefix)])


def exit_on_bad_overrides(args: list[str], prog: str) -> None:
    """A mistyped group option or override: its message, exit 2."""
    problem = check_overrides(args, prog=prog)
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)


# --------------------------------------------------------------------------- ood-bench-tables


def tables_main(argv: list[str] | None = None) -> None:
    """``ood-bench-tables table=<name> [overrides]``: a paper table from real runs."""
    from benchmark.config_groups import group_options
    from benchmark.studies.paper_tables import build

    args = list(sys.argv[1:] if argv is None else argv)
    store_dir = None
    for flag in [a for a in args if a == "--store" or a.startswith("--store=")]:
        i = args.index(flag)
        if flag == "--store":
            if i + 1 >= len(args):
                fail("ood-bench-tables", "--store wants the results store folder")
            store_dir = Path(args.pop(i + 1))
        else:
            store_dir = Path(flag.split("=", 1)[1])
        args.pop(i)
    names, extra = options_and_rest(args, "table")
    if not names:
        fail("ood-bench-tables", "usage: ood-bench-tables table=<name> [--store DIR] "
             "[hydra overrides]; tables: " + ", ".join(group_options("table")))
    exit_on_bad_overrides(args, "ood-bench-tables")
    with user_errors("ood-bench-tables"):
        for name in names:
            print(f"table: {build(name, extra, store_dir=store_dir)}")


# --------------------------------------------------------------------------- ood-bench-novelty


def novelty_main(argv: list[str] | None = None) -> None:
    """``ood-bench-novelty novelty=<name> [overrides]``: the novelty-discovery protocols."""
    from benchmark.config_groups import group_options
    from benchmark.studies.novelty.study import run as run_novelty

    args = list(sys.argv[1:] if argv is None else argv)
    names, extra = options_and_rest(args, "novelty")
    if len(names) != 1:
        fail("ood-bench-novelty", "usage: ood-bench-novelty novelty=<name> [hydra overrides]; "
             "protocols: " + ", ".join(group_options("novelty")))
    exit_on_bad_overrides(args, "ood-bench-novelty")
    # the validation choices take minutes: say what was tried as it goes
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("benchmark.studies.novelty").setLevel(logging.INFO)
    with user_errors("ood-bench-novelty"):
        print(f"novelty: {run_novelty(names[0], extra, argv=args)}")


if __name__ == "__main__":
    main()
