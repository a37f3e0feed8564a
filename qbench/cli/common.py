"""Argument and planning steps shared by the commands that take a suite."""

from __future__ import annotations

import argparse
import fnmatch

from qbench.enumerate import Catalog, PlannedCase, custom_model_names, expand
from qbench.errors import ConfigError
from qbench.runner.session import Session
from qbench.suites import SuiteSpec, load_suite

__all__ = ["add_suite_arguments", "plan"]


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, help="suite name (suites/<name>.toml) or path to a .toml file")
    parser.add_argument("--filter", action="append", default=[], metavar="GLOB",
                        help="keep cases whose id (model/mode/engine/bN/tN/weights) matches; repeatable")
    parser.add_argument("--isolation", choices=("fork", "spawn"), default=None,
                        help="fork from a pre-imported worker (default) or spawn a fresh interpreter per case")


def plan(args: argparse.Namespace, session_factory=Session) -> tuple[SuiteSpec, Session, Catalog, list[PlannedCase]]:
    spec = load_suite(args.suite)
    session = session_factory(spec, isolation=args.isolation)
    try:
        catalog = session.catalog(custom_model_names(spec))
        planned = expand(spec, catalog)
    except BaseException:
        session.close()
        raise
    if args.filter:
        planned = [p for p in planned if any(fnmatch.fnmatch(p.case.case_id, g) for g in args.filter)]
        if not planned:
            session.close()
            raise ConfigError(f"--filter {' '.join(args.filter)} matches no case of suite {spec.name}")
    return spec, session, catalog, planned
