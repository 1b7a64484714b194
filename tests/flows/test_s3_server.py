"""The store across its object store's restart: SeaweedFS (tests/flows/s3_endpoint.py) killed and started
again on its data. While it is down a read fails with the store's own error, naming the store and the
artifact; once it is back the artifact reads back whole, as written."""
import pandas as pd
import pytest
from s3_endpoint import KEY_ID, SECRET, S3Server

from wow_core.store import Store, StoreUnreachable

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path, monkeypatch):
    s3 = S3Server(tmp_path)
    s3.storage.mkdir("restart")
    for name, value in {"AWS_ENDPOINT_URL": s3.direct_url, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    yield s3
    s3.close()


def test_objects_survive_the_server_restarting(server):
    store = Store("s3://restart/store")
    uri = store.uri("samples", "restart", "cd" * 32, "parquet")
    table = pd.DataFrame({"question_id": ["q1", "q2"], "answer": ["3", "four"]})
    store.write_table(uri, table)

    server.kill_server()
    with pytest.raises(StoreUnreachable, match=r"s3://restart/store could not be reached while reading "
                                               r"s3://restart/store/samples/restart-"):
        Store("s3://restart/store").read_table(uri)

    down = server.restart(down_s=2)
    assert 2 <= down < 60
    pd.testing.assert_frame_equal(Store("s3://restart/store").read_table(uri), table)
    assert server.storage.ls("restart/store/samples") == [f"restart/store/{uri}"]
