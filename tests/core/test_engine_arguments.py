"""The vLLM server's command line, parsed as its argparse parses it."""
import argparse

from wow_core.engines import EngineSpec, server_arguments


def test_a_key_that_starts_with_a_dash_is_still_the_keys_value():
    # secrets.token_urlsafe draws from A-Z a-z 0-9 - _: one key in 64 starts with '-', and
    # `--api-key -abc` made vLLM's argparse exit with "expected at least one argument".
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key")
    key = "-Zk3_q9"
    args, _ = server_arguments(EngineSpec(model="/models/m"), 8000, key, "127.0.0.1")
    parsed, _ = parser.parse_known_args(args)
    assert parsed.api_key == key


def test_a_cpu_engine_computes_on_every_core_with_passive_waits_and_schedules_by_priority(monkeypatch):
    import wow_core.engines as engines
    monkeypatch.setattr(engines.os, "sched_getaffinity", lambda pid: {0, 1})
    args, env = server_arguments(EngineSpec(model="/models/m"), 8000, "k", "127.0.0.1")
    assert env["OMP_NUM_THREADS"] == "2" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    assert args[args.index("--scheduling-policy") + 1] == "priority"
    # vLLM's own binding variables do nothing under the "uni" executor: none is set.
    assert not {k for k in env if k.startswith("VLLM_CPU_OMP")}
    assert server_arguments(EngineSpec(model="/models/m", cpu_threads=1), 8000, "k", "127.0.0.1")[1][
        "OMP_NUM_THREADS"] == "1"
    # A GPU engine sets no CPU threads.
    assert "OMP_NUM_THREADS" not in server_arguments(EngineSpec(model="/models/m", device="cuda"), 8000, "k",
                                                     "127.0.0.1")[1]
