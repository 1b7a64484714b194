"""The artifact store: one fsspec URL (local folder or s3://bucket/prefix), content-addressed keys.

An artifact's key is a hash of the stage, the code versions and config that make it, and the URIs
of its inputs (themselves content-addressed), so a rerun with nothing changed finds every artifact
and a changed input redoes only what depends on it. Writes go to a temporary name first and are
then moved into place, so a reader never sees half an artifact.
"""
import hashlib
import io
import json
import uuid
from pathlib import Path

import fsspec
import pandas as pd
from pydantic import BaseModel


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
        self.fs, _ = fsspec.core.url_to_fs(self.url)

    def uri(self, stage: str, label: str, key: str, ext: str) -> str:
        """Where the artifact of `stage` with this content key lives; `label` is for humans."""
        return f"{self.url}/{stage}/{label}-{key[:20]}.{ext}"

    def exists(self, uri: str) -> bool:
        return self.fs.exists(uri)

    def _atomic_write(self, uri: str, data: bytes) -> str:
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
