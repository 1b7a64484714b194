"""An S3-compatible server for the tests: moto's standalone server on a loopback port, reached through
an endpoint process that a test can kill and start again.

moto keeps its objects in memory, so restarting moto itself would lose the bucket, which no real S3 or
MinIO does in an outage. Clients talk to the endpoint process instead: killing it refuses new
connections and resets open ones, exactly what a client sees when the server dies, while the objects
behind it survive, as a real server's do on disk. Run as a script, this file is that endpoint: it
forwards loopback port LISTEN to port TARGET.
"""
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec

BIN = Path(sys.executable).parent
KEY_ID = "wow-test-key-id"
# Distinctive, so a test can look for it in everything the run wrote or printed.
SECRET = "wow-test-secret-7f3c91d2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """A killable endpoint process: loopback port `port` (clients use `url`) forwarded to moto's port."""

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
    """moto on a private port behind a killable endpoint; `url` is what clients use. `endpoint()` adds
    another endpoint to the same objects, so that runs can meet different faults at the same time."""

    def __init__(self, log_dir: Path):
        self.storage_port = free_port()
        self._log = open(log_dir / "moto.log", "w")
        self._moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.storage_port)],
                                      stdout=self._log, stderr=subprocess.STDOUT)
        wait_listening(self.storage_port, self._moto)
        self._endpoints = [Endpoint(self.storage_port)]
        self.url, self.port = self._endpoints[0].url, self._endpoints[0].port
        # Straight to moto, past the endpoints: sees what is stored while an endpoint is down.
        self.storage = fsspec.filesystem("s3", endpoint_url=f"http://127.0.0.1:{self.storage_port}", key=KEY_ID,
                                         secret=SECRET, skip_instance_cache=True, use_listings_cache=False)

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
        self._moto.terminate()
        self._moto.wait(timeout=10)
        self._log.close()


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
