"""The mlflow client's multipart artifact upload, switched on for small files, with a count of
the parts it PUT (the real upload function, wrapped)."""

from __future__ import annotations

from typing import Any

import pytest

CHUNK = 5 * 2**20


def enable_multipart(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the mlflow client upload files of 1 MiB or more in 5 MiB parts; returns the list
    the part numbers it uploads are appended to."""
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(2**20))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(CHUNK))
    real = HttpArtifactRepository._upload_part
    parts: list[int] = []

    def counted(credential: Any, local_file: str, size: int, start_byte: int) -> Any:
        parts.append(credential.part_number)
        return real(credential, local_file, size, start_byte)

    monkeypatch.setattr(HttpArtifactRepository, "_upload_part", staticmethod(counted))
    return parts
