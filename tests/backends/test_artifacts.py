"""ArtifactStore against real backends: a local directory and a moto S3 server (no mocks)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_BUCKET
from memory import PeakRSS

from strata.backends.artifacts import (
    DIGEST_PREFIX,
    ArtifactInfo,
    ArtifactStore,
    safe_relpath,
)
from strata.core.errors import Conflict, DigestMismatch, InvalidInput, NotFound, Unavailable

MiB = 1024 * 1024


@dataclass
class Case:
    """A store plus raw access to what lies under its root, bypassing the store."""

    kind: str
    store: ArtifactStore
    write_raw: Callable[[str, bytes], None]
    read_raw: Callable[[str], bytes]
    raw_names: Callable[[], list[str]]
    pending_uploads: Callable[[], int]


def _local_case(root: Path) -> Case:
    def write_raw(rel: str, data: bytes) -> None:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def raw_names() -> list[str]:
        if not root.exists():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    return Case(
        "local",
        ArtifactStore(str(root)),
        write_raw,
        lambda rel: (root / rel).read_bytes(),
        raw_names,
        lambda: 0,
    )


def _s3_case(endpoint: str) -> Case:
    import boto3

    client: Any = boto3.client("s3", endpoint_url=endpoint)
    prefix = f"t-{uuid.uuid4().hex}"

    def raw_names() -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=S3_BUCKET, Prefix=prefix + "/"
        )
        return sorted(o["Key"][len(prefix) + 1 :] for p in pages for o in p.get("Contents", []))

    def pending_uploads() -> int:
        out = client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=prefix + "/")
        return len(out.get("Uploads", []))

    return Case(
        "s3",
        ArtifactStore(f"s3://{S3_BUCKET}/{prefix}", s3_endpoint_url=endpoint),
        lambda rel, data: client.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/{rel}", Body=data),
        lambda rel: client.get_object(Bucket=S3_BUCKET, Key=f"{prefix}/{rel}")["Body"].read(),
        raw_names,
        pending_uploads,
    )


@pytest.fixture(params=["local", "s3"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    if request.param == "local":
        return _local_case(tmp_path / "store")
    return _s3_case(request.getfixturevalue("s3_endpoint"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FailingSource:
    """Yields ``good`` chunks of ``chunk`` bytes, then raises."""

    def __init__(self, chunk: int, good: int) -> None:
        self.chunk, self.good = chunk, good

    def read(self, size: int = -1) -> bytes:
        if self.good == 0:
            raise RuntimeError("source broke")
        self.good -= 1
        return b"x" * self.chunk


# -- round trips ------------------------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(case: Case) -> None:
    store = case.store
    info = store.put_bytes("a/b/c.bin", b"hello")
    assert info == ArtifactInfo("a/b/c.bin", 5, _sha(b"hello"))
    assert store.get_bytes("a/b/c.bin") == b"hello"
    assert store.get_bytes("./a//b/c.bin") == b"hello"
    assert store.info("a/b/c.bin") == info
    assert store.exists("a/b/c.bin") and store.exists("a/b")
    assert not store.exists("a/b/nope")
    assert store.size("a/b/c.bin") == 5
    assert store.info("a") == ArtifactInfo("a", 0, "", is_dir=True)

    store.put_bytes("a/b/c.bin", b"a longer replacement")
    assert store.get_bytes("a/b/c.bin") == b"a longer replacement"
    assert store.info("a/b/c.bin").sha256 == _sha(b"a longer replacement")

    assert store.put_bytes("empty", b"") == ArtifactInfo("empty", 0, _sha(b""))
    assert store.get_bytes("empty") == b""


def test_file_round_trip(case: Case, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    info = case.store.put_file("models/m.bin", src)
    assert info == ArtifactInfo("models/m.bin", len(data), _sha(data))

    dest = tmp_path / "out" / "deep" / "m.bin"
    assert case.store.get_file("models/m.bin", dest) == info
    assert dest.read_bytes() == data
    assert sorted(os.listdir(dest.parent)) == ["m.bin"]

    with case.store.open_read("models/m.bin") as reader:
        assert reader.read(1000) == data[:1000]
        assert reader.read() == data[1000:]
        assert reader.sha256 == info.sha256 and reader.bytes_read == len(data)

    with pytest.raises(NotFound, match=r"nope\.bin"):
        case.store.put_file("x", tmp_path / "nope.bin")


def test_dir_round_trip_and_listing(case: Case, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    files = {"a.txt": b"A", "sub/b.txt": b"BB", "sub/deeper/c.txt": b"CCC", "subx.txt": b"D"}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)

    uploaded = case.store.put_dir("run1", src)
    assert [i.path for i in uploaded] == sorted(f"run1/{rel}" for rel in files)
    case.store.put_bytes("top.txt", b"top")
    case.store.put_bytes("run10/other.txt", b"other")

    assert case.store.list() == [
        ArtifactInfo("run1", 0, "", is_dir=True),
        ArtifactInfo("run10", 0, "", is_dir=True),
        ArtifactInfo("top.txt", 3, _sha(b"top")),
    ]
    assert case.store.list("run1") == [
        ArtifactInfo("run1/a.txt", 1, _sha(b"A")),
        ArtifactInfo("run1/sub", 0, "", is_dir=True),
        ArtifactInfo("run1/subx.txt", 1, _sha(b"D")),
    ]
    assert [i.path for i in case.store.list("run1/sub/")] == ["run1/sub/b.txt", "run1/sub/deeper"]

    out = tmp_path / "download"
    downloaded = case.store.download_dir("run1", out)
    assert [i.path for i in downloaded] == [i.path for i in uploaded]
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files

    sub = case.store.download_dir("run1/sub", tmp_path / "only-sub")
    assert [i.path for i in sub] == ["run1/sub/b.txt", "run1/sub/deeper/c.txt"]
    assert (tmp_path / "only-sub" / "deeper" / "c.txt").read_bytes() == b"CCC"

    whole = case.store.download_dir("", tmp_path / "all")
    assert len(whole) == len(files) + 2
    assert not (tmp_path / "all" / DIGEST_PREFIX).exists()

    with pytest.raises(InvalidInput):
        case.store.list("top.txt")
    with pytest.raises(InvalidInput):
        case.store.download_dir("top.txt", tmp_path / "x")


def test_put_dir_validates_all_names_first(case: Case, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"A")
    (src / "sub" / "bad\\name").write_bytes(b"B")  # a legal POSIX file name, not a legal path
    with pytest.raises(InvalidInput, match="backslash"):
        case.store.put_dir("run", src)
    assert case.raw_names() == []


def test_empty_root_lists_nothing(case: Case) -> None:
    assert case.store.list() == []
    case.store.check()
    assert case.store.list() == []


def test_delete_file_and_tree_with_sidecars(case: Case) -> None:
    store = case.store
    store.put_bytes("d/x", b"1")
    store.put_bytes("d/sub/y", b"2")
    store.put_bytes("dx", b"3")
    store.put_bytes("keep", b"4")

    store.delete("dx")
    assert not store.exists("dx")
    store.delete("d")
    assert not store.exists("d") and not store.exists("d/sub/y")
    assert [i.path for i in store.list()] == ["keep"]
    assert case.raw_names() == sorted(["keep", f"{DIGEST_PREFIX}/keep.sha256"])
    with pytest.raises(NotFound, match="'d'"):
        store.delete("d")


# -- digests --------------------------------------------------------------------------------


def test_digest_is_recorded_in_hidden_sidecar(case: Case) -> None:
    info = case.store.put_bytes("m/weights.bin", b"w" * 1000)
    record = json.loads(case.read_raw(f"{DIGEST_PREFIX}/m/weights.bin.sha256"))
    assert record == {"sha256": info.sha256, "size": 1000}
    assert sorted(case.raw_names()) == sorted(
        ["m/weights.bin", f"{DIGEST_PREFIX}/m/weights.bin.sha256"]
    )
    assert [i.path for i in case.store.list()] == ["m"]
    with pytest.raises(InvalidInput, match="reserved"):
        case.store.put_bytes(f"{DIGEST_PREFIX}/m/weights.bin.sha256", b"{}")
    with pytest.raises(InvalidInput):
        case.store.list(DIGEST_PREFIX)


@pytest.mark.parametrize("tampered", [b"evil!", b"hello, tampered world", b""])
def test_tampering_is_detected(case: Case, tmp_path: Path, tampered: bytes) -> None:
    info = case.store.put_bytes("t/data.bin", b"hello")
    case.write_raw("t/data.bin", tampered)

    with pytest.raises(DigestMismatch) as err:
        case.store.get_bytes("t/data.bin")
    assert err.value.error_code == "DIGEST_MISMATCH" and isinstance(err.value, Conflict)
    assert "t/data.bin" in err.value.message and info.sha256 in err.value.message
    assert err.value.details == {
        "path": "t/data.bin",
        "expected": info.sha256,
        "actual": _sha(tampered),
    }

    dest_dir = tmp_path / "dl"
    with pytest.raises(DigestMismatch):
        case.store.get_file("t/data.bin", dest_dir / "data.bin")
    assert list(dest_dir.iterdir()) == []

    (dest_dir / "data.bin").write_bytes(b"previous")  # a failed download keeps what was there
    with pytest.raises(DigestMismatch):
        case.store.get_file("t/data.bin", dest_dir / "data.bin")
    assert (dest_dir / "data.bin").read_bytes() == b"previous"
    assert os.listdir(dest_dir) == ["data.bin"]

    with case.store.open_read("t/data.bin") as reader, pytest.raises(DigestMismatch):
        while reader.read(2):
            pass


def _race_reads(
    monkeypatch: pytest.MonkeyPatch, store: ArtifactStore, path: str, writes: list[bytes]
) -> list[bytes]:
    """Make each read of ``path``'s recorded digest let one of ``writes`` land right after
    it, before the reader opens the file: the interleaving of a poll racing an overwrite,
    made certain. Returns the list, which shrinks as writes land."""
    read_digest = store._read_digest

    def then_overwrite(rel: str) -> tuple[str, int] | None:
        recorded = read_digest(rel)
        if writes:
            store.put_bytes(path, writes.pop(0))
        return recorded

    monkeypatch.setattr(store, "_read_digest", then_overwrite)
    return writes


def test_a_read_raced_by_an_overwrite_is_read_again(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    case.store.put_bytes("jobs/j.json", b'{"state": "queued"}')
    left = _race_reads(monkeypatch, case.store, "jobs/j.json", [b'{"state": "running"}'])
    assert case.store.get_bytes("jobs/j.json") == b'{"state": "running"}'
    assert left == []


def test_reads_raced_without_end_give_up_with_digest_mismatch(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    case.store.put_bytes("jobs/j.json", b"0")
    left = _race_reads(
        monkeypatch, case.store, "jobs/j.json", [str(i).encode() for i in range(1, 50)]
    )
    with pytest.raises(DigestMismatch):
        case.store.get_bytes("jobs/j.json")
    # five attempts, each reading the record twice (to open, and after the mismatch):
    # more than one, not forever
    assert len(left) == 49 - 2 * 5


def _tamper_on_first_open(
    monkeypatch: pytest.MonkeyPatch, case: Case, path: str, raw: bytes, then: Any = None
) -> None:
    """On the first read of ``path``'s record, after it: its bytes replaced by ``raw`` behind
    the store's back and its record dropped. ``then(calls)`` runs on each later read of the
    record and may return "none" to hide it (a write between dropping and recording)."""
    read_digest, calls = case.store._read_digest, [0]

    def digest(rel: str) -> tuple[str, int] | None:
        calls[0] += 1
        recorded = read_digest(rel)
        if calls[0] == 1:
            case.write_raw(path, raw)
            case.store._drop_digest(rel)
        elif then is not None and then(calls[0]) == "none":
            return None
        return recorded if calls[0] == 1 else read_digest(rel)

    monkeypatch.setattr(case.store, "_read_digest", digest)


def test_a_raced_read_never_returns_bytes_no_digest_vouches_for(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that met other bytes than its record, whose record then vanished (deleted with
    the bytes rewritten behind the store's back), does not fall back to the unrecorded bytes:
    they are not returned after the race, and the read fails as corrupted."""
    case.store.put_bytes("models/m.bin", b"the model")
    _tamper_on_first_open(monkeypatch, case, "models/m.bin", b"evil bytes")
    with pytest.raises(DigestMismatch, match="no digest is recorded"):
        case.store.get_bytes("models/m.bin")


def test_a_raced_read_waits_for_the_write_to_record_its_digest(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read racing a write that has dropped the old record and not yet recorded the new one
    reads again once it has, and returns the recorded bytes, not those seen in between."""
    case.store.put_bytes("jobs/j.json", b'{"state": "queued"}')

    def write_lands(call: int) -> str | None:
        if call == 4:  # the third open: the write completes and records its digest
            case.store.put_bytes("jobs/j.json", b'{"state": "done"}')
            return None
        return "none"  # the check after the mismatch and the second open see no record

    _tamper_on_first_open(monkeypatch, case, "jobs/j.json", b'{"state": "half', write_lands)
    assert case.store.get_bytes("jobs/j.json") == b'{"state": "done"}'


def test_file_without_recorded_digest_is_not_checked(case: Case) -> None:
    case.write_raw("foreign.bin", b"written elsewhere")
    assert case.store.get_bytes("foreign.bin") == b"written elsewhere"
    assert case.store.info("foreign.bin") == ArtifactInfo("foreign.bin", 17, "")
    assert case.store.list() == [ArtifactInfo("foreign.bin", 17, "")]


# -- paths and errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a/../../b", "'..'"),
        ("a/..", "'..'"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("", "empty"),
        ("./", "empty"),
        ("C:/x", "drive"),
        ("c:x", "drive"),
    ],
)
def test_unsafe_paths_are_rejected(case: Case, path: str, rule: str) -> None:
    with pytest.raises(InvalidInput, match=rule) as err:
        safe_relpath(path)
    assert repr(path) in err.value.message
    for call in (
        lambda: case.store.put_bytes(path, b"x"),
        lambda: case.store.get_bytes(path),
        lambda: case.store.delete(path),
        lambda: case.store.info(path),
    ):
        with pytest.raises(InvalidInput):
            call()
    assert case.raw_names() == []


def test_safe_relpath_normalises() -> None:
    assert safe_relpath("a/b/c") == "a/b/c"
    assert safe_relpath("a//b/./c/") == "a/b/c"
    assert safe_relpath("./a") == "a"
    assert safe_relpath("..a/b..") == "..a/b.."


def test_missing_paths_raise_not_found(case: Case, tmp_path: Path) -> None:
    case.store.put_bytes("present/file", b"x")
    calls: list[Callable[[], object]] = [
        lambda: case.store.get_bytes("nope/missing.bin"),
        lambda: case.store.open_read("nope/missing.bin"),
        lambda: case.store.info("nope/missing.bin"),
        lambda: case.store.size("nope/missing.bin"),
        lambda: case.store.delete("nope/missing.bin"),
        lambda: case.store.get_file("nope/missing.bin", tmp_path / "out.bin"),
        lambda: case.store.list("nope/missing.bin"),
        lambda: case.store.download_dir("nope/missing.bin", tmp_path / "dir"),
    ]
    for call in calls:
        with pytest.raises(NotFound, match=r"nope/missing\.bin") as err:
            call()
        assert err.value.details.get("path", "nope/missing.bin") == "nope/missing.bin"
    assert not case.store.exists("nope/missing.bin")
    assert not (tmp_path / "out.bin").exists() and not (tmp_path / "dir").exists()


def test_uri_for_and_check(case: Case) -> None:
    case.store.check()
    uri = case.store.uri_for("a/b.txt")
    assert uri.startswith("file:///" if case.kind == "local" else f"s3://{S3_BUCKET}/t-")
    assert uri.endswith("/a/b.txt")
    assert case.store.uri_for("") == case.store.uri


def test_check_unavailable(tmp_path: Path, s3_endpoint: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with pytest.raises(Unavailable, match="a-file"):
        ArtifactStore(str(blocker / "root")).check()
    store = ArtifactStore("s3://no-such-bucket/p", s3_endpoint_url=s3_endpoint)
    with pytest.raises(Unavailable, match="s3://no-such-bucket/p") as err:
        store.check()
    assert "testing" not in err.value.message


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://host/x", "hdfs:///x"])
def test_unknown_scheme(uri: str) -> None:
    with pytest.raises(InvalidInput, match="file, s3"):
        ArtifactStore(uri)


def test_root_forms(tmp_path: Path) -> None:
    a = ArtifactStore(str(tmp_path / "r"))
    b = ArtifactStore((tmp_path / "r").as_uri())
    a.put_bytes("x", b"1")
    assert b.get_bytes("x") == b"1" and a.uri == b.uri
    with pytest.raises(InvalidInput):
        ArtifactStore("s3://key:secret@bucket/x")


# -- atomicity ----------------------------------------------------------------------------------


def test_failed_put_leaves_nothing(case: Case) -> None:
    chunk = 5 * MiB if case.kind == "s3" else 64 * 1024  # S3: one part uploaded before failing
    with pytest.raises(RuntimeError, match="source broke"):
        case.store.put_stream("big/blob.bin", FailingSource(chunk, 2), chunk_size=chunk)
    assert not case.store.exists("big/blob.bin")
    assert case.raw_names() == []
    assert case.pending_uploads() == 0

    case.store.put_bytes("big/blob.bin", b"old")
    with pytest.raises(RuntimeError):
        case.store.put_stream("big/blob.bin", FailingSource(chunk, 2), chunk_size=chunk)
    assert case.store.get_bytes("big/blob.bin") == b"old"
    assert case.raw_names() == sorted(["big/blob.bin", f"{DIGEST_PREFIX}/big/blob.bin.sha256"])
    assert case.pending_uploads() == 0


def test_multipart_put_round_trip(case: Case) -> None:
    data = os.urandom(11 * MiB)
    chunk = 5 * MiB

    class Source:
        pos = 0

        def read(self, size: int = -1) -> bytes:
            out = data[self.pos : self.pos + size]
            self.pos += len(out)
            return out

    info = case.store.put_stream("mp.bin", Source(), chunk_size=chunk)
    assert info == ArtifactInfo("mp.bin", len(data), _sha(data))
    assert case.store.get_bytes("mp.bin") == data
    assert case.raw_names() == sorted(["mp.bin", f"{DIGEST_PREFIX}/mp.bin.sha256"])


def _child_put(store: ArtifactStore) -> None:
    store.put_bytes("from-child", store.get_bytes("before") + b"child")


def test_store_survives_fork(case: Case) -> None:
    case.store.put_bytes("before", b"parent+")  # the driver is initialised in the parent
    child = multiprocessing.get_context("fork").Process(target=_child_put, args=(case.store,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert case.store.get_bytes("from-child") == b"parent+child"


# -- streaming --------------------------------------------------------------------------------


class GeneratedStream:
    """``total`` bytes made on demand, one chunk at a time; never holds more than one chunk."""

    def __init__(self, total: int, sample: Callable[[], None]) -> None:
        self.remaining, self.counter, self.sample = total, 0, sample
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        n = min(self.remaining, size if size > 0 else 8 * MiB)
        if n <= 0:
            return b""
        self.counter += 1
        chunk = (self.counter.to_bytes(8, "big") * (n // 8 + 1))[:n]
        self.remaining -= n
        self.sha.update(chunk)
        self.sample()
        return chunk


@pytest.mark.slow
def test_streaming_300mb_keeps_memory_flat(tmp_path: Path) -> None:
    """Write and read 300 MiB with a thread sampling this process's RSS throughout: a store
    that buffered the stream (even one freeing it afterwards) shows at its peak."""
    total = 300 * MiB
    store = ArtifactStore(str(tmp_path / "store"))
    source = GeneratedStream(total, lambda: None)
    with PeakRSS() as writing:
        info = store.put_stream("big/stream.bin", source)
    assert info.size == total and info.sha256 == source.sha.hexdigest()
    assert store.info("big/stream.bin") == info

    with PeakRSS() as reading, store.open_read("big/stream.bin") as reader:
        while reader.read(8 * MiB):
            pass
    assert reader.bytes_read == total and reader.sha256 == info.sha256
    writing.check(100 * MiB, "writing 300 MiB")
    reading.check(100 * MiB, "reading 300 MiB")
    assert os.listdir(tmp_path / "store" / "big") == ["stream.bin"]


def test_symlinks_inside_the_root_are_never_followed(tmp_path: Path) -> None:
    """Issue 7, Low: a link planted in the store must not lead reads or writes outside it."""
    root, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"hunter2")
    store = ArtifactStore(str(root))
    store.put_bytes("runs/ok.txt", b"fine")
    (root / "runs" / "evil").symlink_to(outside, target_is_directory=True)
    (root / "runs" / "link.txt").symlink_to(outside / "secret.txt")
    for path in ("runs/evil/secret.txt", "runs/link.txt"):
        with pytest.raises(InvalidInput, match="symbolic link"):
            store.get_bytes(path)
        with pytest.raises(InvalidInput, match="symbolic link"):
            store.info(path)
    with pytest.raises(InvalidInput, match="symbolic link"):
        store.put_bytes("runs/evil/planted.txt", b"x")
    with pytest.raises(InvalidInput, match="symbolic link"):
        store.put_bytes("runs/link.txt", b"overwrite")
    with pytest.raises(InvalidInput, match="symbolic link"):
        store.list("runs/evil")
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"hunter2"
    assert [i.path for i in store.list("runs")] == ["runs/ok.txt"]
    assert store.get_bytes("runs/ok.txt") == b"fine"


def test_a_name_too_long_for_the_filesystem_is_invalid_input(tmp_path: Path) -> None:
    """Found by the API fuzzer: ENAMETOOLONG was a 503 "store unavailable"."""
    store = ArtifactStore(str(tmp_path / "store"))
    with pytest.raises(InvalidInput, match="too long"):
        store.put_bytes("runs/" + "é" * 200, b"x")
