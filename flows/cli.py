"""The `wow` command: run an experiment config as Prefect flows, or check a config."""
import argparse
import os
import sys
import time

import yaml

# Before Prefect is imported: its temporary server starts slowly on small machines.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value (e.g. sampling.n=4), got '{pair}'")
        out[key] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the elicitation grid of a config and print the report's path")
    check = sub.add_parser("validate", help="validate a config and print it with its defaults")
    for p in (run, check):
        p.add_argument("config", help="experiment config (YAML)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, e.g. --set sampling.n=4 (repeatable)")
    args = parser.parse_args(argv)

    from wow_core.config import ConfigError, load_config
    try:
        config = load_config(args.config, _overrides(args.set))
    except ConfigError as err:
        print(f"wow: {err}", file=sys.stderr)
        return 2
    if args.command == "validate":
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return 0

    from flows.elicit import elicit
    from wow_core.store import Store
    started = time.perf_counter()
    uris = elicit(config)
    print(Store(config.store).read_text(uris["md"]))
    print(f"\nreport: {uris['md']}\nplot:   {uris['png']}\ntable:  {uris['parquet']}\n"
          f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
