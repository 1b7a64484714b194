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
