"""The artifact store: one fsspec URL (local folder or s3://bucket/prefix), content-addressed keys.

An artifact's key is a hash of the stage, the code versions and config that make it, and the URIs
of its inputs (themselves content-addressed), so a rerun with nothing changed finds every artifact
and a changed input redoes only what depends on it. Those URIs are relative to the store
(`samples/nlgraph.m-1a2b….parquet`): no key or result holds where the store is, so a store copied to
another folder, bucket or S3 server is found whole there, Prefect's cache records included. Every
table also says what it was made from (`made_from`), so any Parquet reader can follow it to its inputs.

A reader never sees half an artifact: on a local folder a write goes to a temporary name and is
renamed into place; on an object store it is one PUT,
which is atomic there (a copy and delete would cost twice). Two runs writing the same artifact at once
each write the whole of the same content, so the last one wins and nothing is corrupted.

On S3 (or MinIO and other S3-compatible servers), credentials, region and endpoint come from the
standard AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL) or the AWS config files, read by botocore itself: nothing here sees them. (The flows
can fill those variables from a Prefect Secret block: `s3_secret_env` in flows/elicit.py.)

A store that cannot be reached (after the client's own retries) raises `StoreUnreachable`, which names
the store and the artifact being read or written, and never credentials.
"""
import hashlib
import io
import json
import re
import uuid
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

# botocore waits 60 s to connect by default; an unreachable endpoint should fail a call within seconds
# (botocore retries each call, AWS_MAX_ATTEMPTS times; the tasks retry on top). Listings are not cached:
# another process may write an artifact after this one listed its folder.
S3_OPTIONS = {"use_listings_cache": False, "config_kwargs": {"connect_timeout": 5, "read_timeout": 60}}


MADE_FROM = "wow.made_from"  # a table's Parquet metadata key for what it was made from


class StoreUnreachable(ConnectionError):
    """The store's server could not be reached: refused or reset connections, timeouts. The message
    names the store, what was being done and to which artifact, and the client's own error."""


def _connection_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]  # refused, reset, socket timeouts
    try:  # s3fs (botocore, aiohttp) is optional: only s3:// stores need it
        from botocore.exceptions import ConnectionError as BotoConnectionError, HTTPClientError
        errors += [BotoConnectionError, HTTPClientError]  # endpoint unreachable, connect/read timeouts, resets
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError
        errors.append(ClientConnectionError)
    except ImportError:
        pass
    return tuple(errors)


_CONNECTION_ERRORS = _connection_errors()


def redact(text: str) -> str:
    """`text` without the user:password@ part of any URL in it."""
    return re.sub(r"(\w://)[^/\s@]*@", r"\1", text)


def storage_options(url: str) -> dict:
    """The fsspec options for a store at `url`: S3_OPTIONS for s3://, none for a local folder."""
    return dict(S3_OPTIONS) if url.startswith(("s3://", "s3a://")) else {}


def jsonable(value):
    """`value` with every pydantic model dumped to JSON types, recursively."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def content_key(stage: str, **parts) -> str:
    """Hex sha256 of a stage name and its inputs (configs, versions, input URIs)."""
    blob = json.dumps({"stage": stage, **jsonable(parts)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class Store:
    """Artifacts under one fsspec URL."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, _ = fsspec.core.url_to_fs(self.url, **storage_options(self.url))

    def uri(self, stage: str, label: str, key: str, ext: str) -> str:
        """The URI, relative to the store, of the artifact of `stage` with this content key; `label` is
        for humans."""
        return f"{stage}/{label}-{key[:20]}.{ext}"

    def url_of(self, uri: str) -> str:
        """Where `uri` is: a URI relative to the store resolved against its URL; an absolute path or a
        URL with a scheme (an input from outside the store) as it is."""
        return uri if "://" in uri or uri.startswith("/") else f"{self.url}/{uri}"

    def _relative(self, path: str) -> str:
        """A path as the filesystem lists it, relative to the store."""
        root = self.fs._strip_protocol(self.url).rstrip("/")
        return path[len(root) + 1:] if path.startswith(root + "/") else path

    def glob(self, pattern: str) -> list[str]:
        """The URIs (relative to the store) matching `pattern` (relative to the store), sorted."""
        with self._reaching("listing", pattern):
            return sorted(self._relative(p) for p in self.fs.glob(self.url_of(pattern)))

    def files(self, uri: str) -> list[str]:
        """The files at `uri`: itself if a file, every file under it if a folder (URIs relative to the store)."""
        with self._reaching("listing", uri):
            return sorted(self._relative(p) for p in self.fs.find(self.url_of(uri)))

    @contextmanager
    def _reaching(self, doing: str, uri: str):
        """Turn the client's connection errors into one StoreUnreachable naming the store and artifact."""
        try:
            yield
        except StoreUnreachable:
            raise
        except _CONNECTION_ERRORS as err:
            cause = " ".join(f"{type(err).__name__}: {err}".split())
            raise StoreUnreachable(redact(f"the store {self.url} could not be reached while {doing} {self.url_of(uri)} "
                                          f"({cause})")) from err

    def exists(self, uri: str) -> bool:
        with self._reaching("checking for", uri):
            return self.fs.exists(self.url_of(uri))

    def _atomic_write(self, uri: str, data: bytes) -> str:
        with self._reaching("writing", uri):
            self._write(uri, data)
            return uri

    def _write(self, uri: str, data: bytes) -> str:
        uri = self.url_of(uri)
        if not isinstance(self.fs, LocalFileSystem):
            self.fs.pipe_file(uri, data)  # one PUT (or one multipart upload): atomic on an object store
            return uri
        parent = uri.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{uri}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, uri)
        return uri

    def write_bytes(self, uri: str, data: bytes) -> str:
        return self._atomic_write(uri, data)

    def write_text(self, uri: str, text: str) -> str:
        return self._atomic_write(uri, text.encode())

    def write_table(self, uri: str, table: pd.DataFrame, made_from: dict | None = None) -> str:
        """Write `table` as Parquet; `made_from` (the stage, key and inputs that made it) goes in the
        file's key-value metadata under `wow.made_from`, JSON, readable by any Parquet reader."""
        buf = io.BytesIO()
        arrow = pa.Table.from_pandas(table, preserve_index=False)
        if made_from is not None:
            arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                                   MADE_FROM: json.dumps(jsonable(made_from), sort_keys=True)})
        pq.write_table(arrow, buf)
        return self._atomic_write(uri, buf.getvalue())

    def made_from(self, uri: str) -> dict | None:
        """What the table at `uri` was made from (`write_table`), or None for a table written without it."""
        with self._reaching("reading", uri), self.fs.open(self.url_of(uri), "rb") as f:
            metadata = pq.read_schema(f).metadata or {}
        return json.loads(metadata[MADE_FROM.encode()]) if MADE_FROM.encode() in metadata else None

    def write_folder(self, uri: str, local: str, last: str) -> str:
        """Copy a local folder's files under `uri`, each atomically, the file named `last` written
        last: a folder counts as present once `last` is there (object stores have no atomic folders)."""
        root = Path(local)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix() == last):
            self._atomic_write(f"{uri}/{path.relative_to(root).as_posix()}", path.read_bytes())
        return uri

    def read_bytes(self, uri: str) -> bytes:
        with self._reaching("reading", uri), self.fs.open(self.url_of(uri), "rb") as f:
            return f.read()

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode()

    def read_table(self, uri: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(uri)))
