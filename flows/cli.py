"""The `wow` command: run an experiment config as Prefect flows (here or on a worker), check a config,
or set up a Prefect server's work pools, limits and deployments."""
import argparse
import os
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

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


EXIT_STATUS = """exit status:
  0  done
  1  the run failed: the store could not be reached or its S3 secret read (one line says which), or
     an error of wow or a model (its traceback)
  2  the config or a dataset is invalid (one line names the file, the line or record and the field),
     as `wow validate` finds it, and `wow run` before it starts a flow run (or, for what only a run
     meets, e.g. a generator asked for more questions than it has, during the run)"""


def _fail(err: Exception, code: int, debug: bool) -> int:
    """Print `wow: <message>` (after the traceback with --debug) and return the exit status."""
    if debug:
        traceback.print_exception(err)
    print(f"wow: {err}", file=sys.stderr)
    return code


def check_datasets(config) -> None:
    """Read and check every local dataset file that `config` names, as its run would load it, without
    models (wow_core/datasets `check_file`). Generated questions and files at a URL are left to the
    run: generating may need an engine (chess) or a model (graded options).

    Raises:
        DataError: the first bad record, naming file, line or record, and field.
    """
    from wow_core.datasets import check_file
    for dataset in config.datasets:
        if dataset.source == "file" and "://" not in dataset.path:
            check_file(dataset.name, dataset.path, dataset.options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="wow", description=__doc__, epilog=EXIT_STATUS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a config's grid (elicitation, then alignment if configured) and print "
                                     "the reports",
                         epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    check = sub.add_parser("validate", help="validate a config and its dataset files, and print it with its defaults",
                           epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--flow", choices=["grid", "elicit", "align"], default="grid",
                     help="grid: elicitation + alignment as one DAG (default); elicit or align alone")
    run.add_argument("--deployment", metavar="NAME",
                     help="run on a worker through deployment FLOW/NAME (e.g. cpu, gpu) of the server at "
                          "PREFECT_API_URL, wait for it and print its reports")
    run.add_argument("--s3-secret", metavar="BLOCK",
                     help="take the S3 endpoint, credentials and region from this Prefect Secret block "
                          "(docs/operations-storage.md; default: $WOW_S3_SECRET_BLOCK, else the AWS variables)")
    doctor = sub.add_parser("doctor", help="say what this machine is (CPU extensions, cores, memory, GPUs), what "
                                           "precision and engine settings a config's models get on it, and "
                                           "whether the engine environment, Stockfish and the store are ready")
    doctor.add_argument("config", nargs="?", help="experiment config (YAML) whose run to check")
    doctor.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    profile = sub.add_parser("profile", help="where a flow run's time went: its task runs by stage, from the "
                                             "server at PREFECT_API_URL")
    profile.add_argument("flow_run_id", help="the flow run's id (the UI's run page shows it)")
    sub.add_parser("deploy", help="create the work pools, the zombie-run automation and the deployments of "
                                  "deployments/prefect.yaml on the server at PREFECT_API_URL")
    for p in (run, check):
        p.add_argument("config", help="experiment config (YAML)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a field, e.g. --set sampling.n=4 (repeatable)")
        p.add_argument("--debug", action="store_true",
                       help="print the traceback of an error, and Prefect's tracebacks of failed task and flow "
                            "runs (without it: one line; the Prefect UI keeps each run's tracebacks)")
    args = parser.parse_args(argv)
    if args.command == "profile":
        from flows.deploy import require_server
        from flows.stage_times import flow_run_profile
        require_server()
        print(flow_run_profile(args.flow_run_id))
        return 0
    if args.command == "deploy":
        from flows.deploy import require_server, setup
        require_server()
        return setup()

    from wow_core.config import ConfigError, load_config
    from wow_core.datasets import DataError
    if args.command == "doctor":
        from wow_core.doctor import diagnose, render
        try:
            config = load_config(args.config, _overrides(args.set)) if args.config else None
        except ConfigError as err:
            return _fail(err, 2, False)
        checks = diagnose(config)
        print(render(checks), end="")
        return 1 if any(c.status == "!!" for c in checks) else 0
    try:
        config = load_config(args.config, _overrides(args.set))
        check_datasets(config)  # before a server or a flow run exists
        if config.alignment is not None:
            from wow_core.train import check_trainers
            check_trainers(config, args.config)
    except (ConfigError, DataError) as err:
        return _fail(err, 2, args.debug)
    if args.command == "validate":
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return 0

    from flows.deploy import S3_SECRET_BLOCK_ENV
    if args.s3_secret:
        os.environ[S3_SECRET_BLOCK_ENV] = args.s3_secret
    if args.deployment:
        from flows.deploy import require_server, trigger
        require_server()
        return trigger(f"{args.flow}/{args.deployment}", config,
                       env={S3_SECRET_BLOCK_ENV: args.s3_secret} if args.s3_secret else None)

    from flows.runtime import RETRY_DELAYS_ENV, S3SecretError, io_retries, s3_secret_env
    try:
        io_retries(os.environ.get(RETRY_DELAYS_ENV))  # what every flow run reads again when it starts
    except ValueError as err:
        return _fail(err, 2, args.debug)
    if not args.debug:  # Prefect is imported and its logging set up: one line per failure, not three tracebacks
        from flows.console import hide_run_tracebacks
        hide_run_tracebacks()
    from wow_core.store import StoreUnreachable
    try:
        with s3_secret_env(config.store):  # the flow takes them too (on a worker it is alone); this reads the reports
            return _run_here(args.flow, config)
    except (StoreUnreachable, S3SecretError) as err:  # the run's logs in the Prefect UI keep the traceback
        return _fail(err, 1, args.debug)
    except (ConfigError, DataError) as err:  # e.g. a file changed since the check, or a generator's settings
        return _fail(err, 2, args.debug)


@contextmanager
def temporary_server():
    """A Prefect server for this command alone when none is configured: `prefect server start` on a free
    loopback port (its database is $PREFECT_HOME's, as Prefect's own temporary server's), under the
    watchdog of wow_core/processes.py, so that even a `kill -9` of this command leaves no server behind
    (Prefect's own temporary server outlived it, holding its port and memory). Yields its URL."""
    import httpx
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    from wow_core.processes import free_port, start_watched, stop_group
    port = free_port("127.0.0.1")
    log = Path(PREFECT_HOME.value()) / f"wow-server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    print(f"wow: starting a temporary Prefect server at {url} (its UI shows this run; log {log})",
          file=sys.stderr, flush=True)
    process = start_watched([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], log, {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    try:
        deadline = time.monotonic() + float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
        while True:
            if process.poll() is not None:
                raise SystemExit(f"wow: the temporary Prefect server exited while starting; see {log}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"wow: the temporary Prefect server did not answer in time; see {log}")
            time.sleep(0.5)
        # As the process-wide settings too: code in a thread of its own has no settings context (e.g. a
        # future's done callback, in the task runner's thread after its task) and would start Prefect's
        # own temporary server and talk to it instead of this one.
        previous = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = f"{url}/api"
        refresh_global_settings_context()
        try:
            with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
                try:
                    yield url
                finally:
                    _drain_to_server()
        finally:
            if previous is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = previous
            refresh_global_settings_context()
    finally:
        stop_group(process, grace_s=10)


def _drain_to_server(timeout_s: float = 10) -> None:
    """Send the log lines and events still queued to the server before it stops: the last lines of a
    failed run (its traceback, its final state) reach the Prefect UI, and no sender is left to fail
    against a stopped server when this process exits ("All connection attempts failed")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout_s)


def _run_here(flow: str, config) -> int:
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        with temporary_server():
            return _run_flow(flow, config, temporary=True)
    return _run_flow(flow, config, temporary=False)


COMPANION_REPORTS = {"leaderboard": "judge leaderboard", "budget": "budget-aware judging",
                     "rounds": "iterative alignment"}


def _run_flow(flow: str, config, temporary: bool) -> int:
    from wow_core.store import Store
    started = time.perf_counter()
    if flow == "elicit":
        from flows.elicit import elicit as run
        kind = "elicitation"
    elif flow == "align":
        from flows.align import align as run
        kind = "alignment"
    else:
        from flows.grid import grid as run
        kind = None  # the grid returns its reports by kind
    state = run(config, return_state=True)
    # Where the time went, from the task runs the server recorded. The temporary server stops when this
    # process ends: let it write the last task states first (on a cached rerun most are still queued).
    # Best effort: the run's result comes first.
    from flows.stage_times import flow_run_profile
    try:
        profile = flow_run_profile(state.state_details.flow_run_id, settle_s=30 if temporary else 5)
    except Exception as err:  # noqa: BLE001
        profile = f"(no profile: could not read the task runs back from the server: {err})"
    result = state.result()  # raises the flow's error
    reports = {kind: result} if kind else result
    store = Store(config.store)
    # A report's companions (the judge leaderboard, budget-aware judging, iterative rounds) follow it.
    shown = {}
    for kind, uris in reports.items():
        if uris:
            shown[kind] = uris
            shown |= {title: uris[key] for key, title in COMPANION_REPORTS.items() if key in uris}
    from flows.artifacts import precision_preface
    from flows.runtime import precision_notes
    print(precision_preface(precision_notes(config)), end="")
    for uris in shown.values():
        print(store.read_text(uris["md"]) + "\n")
    for kind, uris in shown.items():
        pngs = uris["png"] if isinstance(uris["png"], list) else [uris["png"]]
        print(f"{kind} report: {store.url_of(uris['md'])}\n  table: {store.url_of(uris['parquet'])}\n"
              + "".join(f"  plot:  {store.url_of(p)}\n" for p in pngs))
    print(profile + "\n")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
