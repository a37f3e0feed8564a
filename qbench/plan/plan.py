"""Stage 2 as one call: a suite, this machine and the worker's catalog, --filter and --shard, to the planned cases."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch

from qbench.errors import ConfigError
from qbench.launch.machine import collect_machine
from qbench.launch.session import Session
from qbench.plan.expand import Catalog, PlannedCase, custom_model_names, expand
from qbench.plan.shard import expected_costs, select_shard
from qbench.suite.load import SuiteSpec, load_suite
from qbench.suite.profiles import profile

__all__ = ["plan"]


def plan(args: argparse.Namespace, machine: dict | None = None) -> tuple[SuiteSpec, Session, Catalog, list[PlannedCase]]:
    """Suite, an open Session (the caller closes it), catalog, and the planned cases after --filter. Runner profiles
    are checked against `machine` (default: this machine)."""
    spec = load_suite(args.suite)
    machine = machine or collect_machine(getattr(args, "machine", None))
    if args.runner:
        runners = tuple(dict.fromkeys(profile(name).name for name in args.runner))
        spec = dataclasses.replace(spec, matrices=tuple(dataclasses.replace(m, runners=runners)
                                                        for m in spec.matrices))
    results = getattr(args, "results", None)
    cache = {"enabled": not getattr(args, "no_cache", True), "dir": getattr(args, "cache_dir", None)}
    peaks_homes = []
    if results and not getattr(args, "no_peaks", True):
        from qbench.launch.artifact_cache import default_root

        peaks_homes = [(results, machine["machine_id"]), (default_root() / "peaks", machine["machine_id"])]
    from qbench.data.network import network_env

    extra_env = network_env(offline_flag=getattr(args, "offline", False), mirror_url=getattr(args, "mirror", None),
                            weights_manifest=getattr(args, "weights_manifest", None))
    session = Session(spec, isolation=args.isolation, cache=cache, peaks_homes=peaks_homes, extra_env=extra_env)
    try:
        catalog = session.catalog(custom_model_names(spec))
        planned = expand(spec, catalog, machine)
    except BaseException:
        session.close()
        raise
    if args.filter:
        planned = [p for p in planned if any(fnmatch.fnmatch(p.case.case_id, g) for g in args.filter)]
        if not planned:
            session.close()
            raise ConfigError(f"--filter {' '.join(args.filter)} matches no case of suite {spec.name}")
    if args.shard:
        try:
            costs = expected_costs(getattr(args, "results", "results"), machine["machine_id"])
            planned = select_shard(planned, args.shard, costs)
        except BaseException:
            session.close()
            raise
    return spec, session, catalog, planned
