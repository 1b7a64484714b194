"""A store whose server cannot be reached fails with one error naming the store and the artifact."""
import socket
import time

import fsspec
import pandas as pd
import pytest

from wow_core.store import Store, StoreUnreachable, redact


@pytest.fixture(autouse=True)
def fresh_s3_clients():
    # fsspec caches one S3 filesystem per set of options, endpoint included: the one made here, on a
    # closed port, must not be what later tests' stores get.
    s3 = fsspec.get_filesystem_class("s3")
    s3.clear_instance_cache()
    yield
    s3.clear_instance_cache()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: connections are refused


def test_an_unreachable_s3_store_names_store_and_artifact_never_the_key(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSECRETVALUE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    store = Store("s3://bucket/run")
    uri = store.uri("samples", "sp", "0" * 40, "parquet")
    started = time.perf_counter()
    for action, call in (("writing", lambda: store.write_table(uri, pd.DataFrame({"a": [1]}))),
                         ("reading", lambda: store.read_table(uri)), ("checking for", lambda: store.exists(uri))):
        with pytest.raises(StoreUnreachable) as err:
            call()
        message = str(err.value)
        assert message.startswith(f"the store s3://bucket/run could not be reached while {action} "
                                  f"s3://bucket/run/{uri} (")
        assert "secret" not in message.lower() and "AKID" not in message
    assert time.perf_counter() - started < 60


def test_redact_drops_user_and_password_from_urls():
    assert redact("at http://user:pw@host:9000/x and s3://k@b/p") == "at http://host:9000/x and s3://b/p"
