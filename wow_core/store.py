"""The artifact store: one fsspec URL (local folder or s3://bucket/prefix), content-addressed keys.

An artifact's key is a hash of the stage, the code versions and config that make it, and the URIs
of its inputs (themselves content-addressed), so a rerun with nothing changed finds every artifact
and a changed input redoes only what depends on it. A reader never sees half an artifact: on a local
folder a write goes to a temporary name and is renamed into place; on an object store it is one PUT,
which is atomic there (a copy and delete would cost twice). Two runs writing the same artifact at once
each write the whole of the same content, so the last one wins and nothing is corrupted.

On S3 (or MinIO and other S3-compatible servers), credentials, region and endpoint come from the
standard AWS environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL) or the AWS config files, read by botocore itself: nothing here sees them.
"""
import hashlib
import io
import json
import uuid
from pathlib import Path

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

# botocore waits 60 s to connect by default; an unreachable endpoint should fail a call within seconds
# (botocore retries each call, AWS_MAX_ATTEMPTS times; the tasks retry on top). Listings are not cached:
# another process may write an artifact after this one listed its folder.
S3_OPTIONS = {"use_listings_cache": False, "config_kwargs": {"connect_timeout": 5, "read_timeout": 60}}


def storage_options(url: str) -> dict:
    """The fsspec options for a store at `url`: S3_OPTIONS for s3://, none for a local folder."""
    return dict(S3_OPTIONS) if url.startswith(("s3://", "s3a://")) else {}


def _jsonable(value):
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def content_key(stage: str, **parts) -> str:
    """Hex sha256 of a stage name and its inputs (configs, versions, input URIs)."""
    blob = json.dumps({"stage": stage, **_jsonable(parts)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class Store:
    """Artifacts under one fsspec URL."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.fs, _ = fsspec.core.url_to_fs(self.url, **storage_options(self.url))

    def uri(self, stage: str, label: str, key: str, ext: str) -> str:
        """Where the artifact of `stage` with this content key lives; `label` is for humans."""
        return f"{self.url}/{stage}/{label}-{key[:20]}.{ext}"

    def exists(self, uri: str) -> bool:
        return self.fs.exists(uri)

    def _atomic_write(self, uri: str, data: bytes) -> str:
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

    def write_table(self, uri: str, table: pd.DataFrame) -> str:
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        return self._atomic_write(uri, buf.getvalue())

    def write_folder(self, uri: str, local: str, last: str) -> str:
        """Copy a local folder's files under `uri`, each atomically, the file named `last` written
        last: a folder counts as present once `last` is there (object stores have no atomic folders)."""
        root = Path(local)
        files = sorted(p for p in root.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.relative_to(root).as_posix() == last):
            self._atomic_write(f"{uri}/{path.relative_to(root).as_posix()}", path.read_bytes())
        return uri

    def read_bytes(self, uri: str) -> bytes:
        with self.fs.open(uri, "rb") as f:
            return f.read()

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode()

    def read_table(self, uri: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(uri)))
