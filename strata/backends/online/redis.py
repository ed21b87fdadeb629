"""The online store on Redis: one string per (view, key) holding the event time (8 bytes,
big-endian microseconds) followed by the value.

Writes go through a Lua script that keeps the newer event time, pipelined in batches; reads
are one ``MGET``. Keys are ``strata:fs:<view>:<hex of the entity key>``.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from strata.backends.online.base import Entry, OnlineStore
from strata.core.config import redact_uri
from strata.core.errors import Unavailable

# KEYS[i], ARGV[i] = the entry as stored (8 bytes of time, then the value): write it when
# the key is absent or holds no newer time. One argument per entry, built in Python, so the
# client packs two arguments a row and the server concatenates nothing.
_WRITE = """
local n = #KEYS
for i = 1, n do
  local entry = ARGV[i]
  local cur = redis.call('GETRANGE', KEYS[i], 0, 7)
  if cur == '' or cur <= string.sub(entry, 1, 8) then
    redis.call('SET', KEYS[i], entry)
  end
end
return n
"""
_BATCH = 1000


class RedisOnlineStore(OnlineStore):
    def __init__(self, url: str) -> None:
        self.display = redact_uri(url)
        self._client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._write = self._client.register_script(_WRITE)

    @staticmethod
    def _key(view: str, key: bytes) -> str:
        return f"strata:fs:{view}:{key.hex()}"

    def _fail(self, exc: Exception) -> Unavailable:
        return Unavailable(
            f"The online store at {self.display} is unreachable: {type(exc).__name__}"
        )

    def write(
        self, view: str, keys: Sequence[bytes], ts_us: Sequence[int], values: Sequence[bytes]
    ) -> int:
        try:
            pipe = self._client.pipeline(transaction=False)
            prefix = f"strata:fs:{view}:"
            for i in range(0, len(keys), _BATCH):
                ks = [prefix + k.hex() for k in keys[i : i + _BATCH]]
                entries = [
                    int(t).to_bytes(8, "big", signed=True) + v
                    for t, v in zip(ts_us[i : i + _BATCH], values[i : i + _BATCH], strict=True)
                ]
                self._write(keys=ks, args=entries, client=pipe)
                if len(pipe) >= 8:
                    pipe.execute()
            pipe.execute()
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        return len(keys)

    def read(self, view: str, keys: Sequence[bytes]) -> list[Entry | None]:
        if not keys:
            return []
        try:
            raw = self._client.mget([self._key(view, k) for k in keys])
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        out: list[Entry | None] = []
        for r in raw:
            blob = r if isinstance(r, bytes) else b""
            out.append(
                Entry(int.from_bytes(blob[:8], "big", signed=True), blob[8:]) if blob else None
            )
        return out

    def delete_view(self, view: str) -> int:
        removed = 0
        try:
            batch: list[bytes] = []
            for key in self._client.scan_iter(match=f"strata:fs:{view}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    removed += self._client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += self._client.unlink(*batch)
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        return removed

    def close(self) -> None:
        self._client.close()
