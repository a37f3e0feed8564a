"""`qbench data`: the named evaluation and calibration sets (qbench.data.sets): fetch one into the data cache,
list them, print where one is, or print the per-file sha256s recorded when it was fetched."""

from __future__ import annotations

import json
import os
import sys
import time

from qbench.cli import EXIT_OK, Command
from qbench.data.network import network_env
from qbench.data.sets import data_root, fetch, known_sets, load_manifest, recorded_files, resolve_source

__all__ = ["DataCommand", "COMMAND"]


class _Progress:
    """A byte counter on stderr, at most one line a second (and one at the end)."""

    def __init__(self):
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 1.0 and done != total:
            return
        self.last = now
        share = f" of {total / 2**20:.1f} MiB ({done / total:.0%})" if total else ""
        print(f"download  {done / 2**20:.1f} MiB{share}", file=sys.stderr, flush=True)


class DataCommand(Command):
    name = "data"
    help = "fetch and inspect the named labelled image sets suites use (source = \"data:<name>/<split>\")"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        get = sub.add_parser("fetch", help="download, verify and unpack a set into the data cache (resumable)")
        get.add_argument("name", help="a set name (see `qbench data list`) or a manifest .json file")
        get.add_argument("--mirror", default=None, metavar="URL",
                         help="base URL replacing the download host (default: $QBENCH_MIRROR)")
        get.add_argument("--offline", action="store_true", help="do not download (default: $QBENCH_OFFLINE)")
        sub.add_parser("list", help="the sets qbench has manifests for, and which are fetched")
        where = sub.add_parser("path", help="the folder of a fetched set's split")
        where.add_argument("source", help="data:<name>/<split>")
        manifest = sub.add_parser("manifest",
                                  help="print a fetched set's per-file sha256s as a manifest \"files\" table")
        manifest.add_argument("name")

    def run(self, args) -> int:
        if args.action == "fetch":
            os.environ.update(network_env(offline_flag=args.offline, mirror_url=args.mirror))
            state = fetch(args.name, progress=_Progress())
            verb = "fetched" if state["downloaded"] else "cached "
            print(f"{verb}   {state['name']}: {state['files']} files in {data_root() / state['name']}")
            print(f"verified  {state['files_verified']}")
            print(f"identity  files_sha256 {state['files_sha256']}  manifest {state['manifest_sha256'][:16]}")
            return EXIT_OK
        if args.action == "list":
            for name in known_sets():
                manifest, _ = load_manifest(name)
                fetched = (data_root() / name / ".qbench-data.json").is_file()
                print(f"{name:24} {'fetched' if fetched else 'not fetched':12} splits {', '.join(manifest['splits'])}"
                      f"  licence: {(manifest.get('licence') or '?').split(';')[0]}")
            return EXIT_OK
        if args.action == "path":
            print(resolve_source(args.source)[0])
            return EXIT_OK
        print(json.dumps({"files": recorded_files(args.name)}, indent=1, sort_keys=True))
        return EXIT_OK


COMMAND = DataCommand
