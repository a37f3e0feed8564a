"""`qbench cache list|info|clear`: inspect and empty the cache of quantized artifacts (qbench.launch.artifact_cache)."""

from __future__ import annotations

import json

from qbench.launch.artifact_cache import ArtifactFolder, default_root
from qbench.cli import EXIT_OK, Command
from qbench.errors import ConfigError

__all__ = ["CacheCommand"]

_DAY_S = 86400.0


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _label(entry: dict) -> str:
    meta = entry["meta"]
    if meta.get("case_id"):
        return meta["case_id"]
    identity = meta.get("identity") or {}
    parts = [identity.get(name) for name in ("model", "mode", "engine", "qconfig")]
    return "/".join(str(p) for p in parts if p) or "-"


def _find(cache: ArtifactFolder, prefix: str) -> str:
    keys = [entry["key"] for entry in cache.entries() if entry["key"].startswith(prefix.lower())]
    if len(keys) != 1:
        found = "no entry" if not keys else f"{len(keys)} entries"
        raise ConfigError(f"cache key {prefix!r} matches {found} in {cache.root}; see `qbench cache list`")
    return keys[0]


class CacheCommand(Command):
    name = "cache"
    help = "list, inspect or clear the cache of quantized artifacts"

    def add_arguments(self, parser):
        parser.add_argument("--cache-dir", default=None,
                            help=f"cache folder (default $QBENCH_CACHE_DIR, else {default_root()})")
        actions = parser.add_subparsers(dest="action", required=True)
        listing = actions.add_parser("list", help="one line per cached artifact, most recently used first")
        listing.add_argument("--json", action="store_true", help="one JSON object per entry")
        info = actions.add_parser("info", help="an entry's key fields and provenance")
        info.add_argument("key", help="the entry's key or a unique prefix of it")
        clear = actions.add_parser("clear", help="delete entries")
        clear.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                           help="only entries not used for more than DAYS days")

    def run(self, args) -> int:
        cache = ArtifactFolder(args.cache_dir)
        return {"list": self._list, "info": self._info, "clear": self._clear}[args.action](cache, args)

    @staticmethod
    def _list(cache: ArtifactFolder, args) -> int:
        entries = cache.entries()
        for entry in entries:
            if args.json:
                print(json.dumps({k: v for k, v in entry.items() if k != "last_used_ts"}, sort_keys=True))
            else:
                state = f"  ({entry['error']})" if "error" in entry else ""
                print(f"{entry['key'][:12]}  {_size(entry['bytes']):>10}  {entry['last_used'] or '-':20}  "
                      f"{_label(entry)}{state}")
        if not args.json:
            total = sum(entry["bytes"] for entry in entries)
            print(f"{len(entries)} entries, {_size(total)} in {cache.root}")
        return EXIT_OK

    @staticmethod
    def _info(cache: ArtifactFolder, args) -> int:
        key = _find(cache, args.key)
        entry = next(e for e in cache.entries() if e["key"] == key)
        shown = {**(cache.info(key) or {}), "path": entry["path"], "last_used": entry["last_used"]}
        if "error" in entry:
            shown["error"] = entry["error"]
        print(json.dumps(shown, indent=2, sort_keys=True))
        return EXIT_OK

    @staticmethod
    def _clear(cache: ArtifactFolder, args) -> int:
        if args.older_than is not None and args.older_than < 0:
            raise ConfigError(f"--older-than {args.older_than:g}: expected a number of days >= 0")
        removed = cache.clear(None if args.older_than is None else args.older_than * _DAY_S)
        scope = "" if args.older_than is None else f" not used for {args.older_than:g} days"
        print(f"removed {removed} entries{scope} from {cache.root}")
        return EXIT_OK


COMMAND = CacheCommand
