"""Per-job bookkeeping as one Redis command.

The worker's writes at job start and end (metrics, health, durations, counters, the in-flight
record) ride in the pipelines rq already sends, but each pipelined command still costs redis-py
tens of microseconds to pack and parse; for a trivial job, a dozen of them cost more than the
job. `WriteBatch` records the same calls the metrics and health code make on a pipeline and
adds them to rq's pipeline as a single EVAL of a small interpreter script.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["WriteBatch"]

# Each operation is four arguments: name, key index, and two operands ('' when unused).
_APPLY = """
for i = 1, #ARGV, 4 do
  local op, key, a, b = ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3]
  if op == 'hincrby' then redis.call('HINCRBY', key, a, b)
  elseif op == 'hincrbyfloat' then redis.call('HINCRBYFLOAT', key, a, b)
  elseif op == 'hdel' then redis.call('HDEL', key, a)
  elseif op == 'hset' then redis.call('HSET', key, a, b)
  elseif op == 'zadd' then redis.call('ZADD', key, b, a)
  elseif op == 'zaddxx' then redis.call('ZADD', key, 'XX', b, a)
  elseif op == 'lrem' then redis.call('LREM', key, b, a)
  elseif op == 'expire' then redis.call('EXPIRE', key, a)
  elseif op == 'setex' then redis.call('SET', key, a, 'EX', b)
  elseif op == 'incr' then redis.call('INCR', key)
  elseif op == 'zremrangebyscore' then redis.call('ZREMRANGEBYSCORE', key, a, b)
  else return redis.error_reply('fleetkit batch: unknown operation ' .. op) end
end
return #ARGV / 4
"""


class WriteBatch:
    """Records the pipeline calls fleetkit's bookkeeping makes; `add_to` sends them as one EVAL.

    Only the methods (and argument shapes) the metrics, health and worker code use exist.
    """

    def __init__(self) -> None:
        self._keys: dict[str, int] = {}
        self._args: list[str] = []

    def __len__(self) -> int:
        return len(self._args) // 4

    def _op(self, name: str, key: str, a: object = "", b: object = "") -> WriteBatch:
        index = self._keys.setdefault(key, len(self._keys) + 1)
        self._args += [name, str(index), _text(a), _text(b)]
        return self

    def hset(
        self,
        key: str,
        field: str | None = None,
        value: object = None,
        mapping: Mapping[str, object] | None = None,
    ) -> WriteBatch:
        if field is not None:
            self._op("hset", key, field, value)
        for name, item in (mapping or {}).items():
            self._op("hset", key, name, item)
        return self

    def hincrby(self, key: str, field: str, amount: int = 1) -> WriteBatch:
        return self._op("hincrby", key, field, amount)

    def hincrbyfloat(self, key: str, field: str, amount: float = 1.0) -> WriteBatch:
        return self._op("hincrbyfloat", key, field, amount)

    def hdel(self, key: str, field: str) -> WriteBatch:
        return self._op("hdel", key, field)

    def zadd(self, key: str, mapping: Mapping[str, float | str], xx: bool = False) -> WriteBatch:
        for member, score in mapping.items():
            self._op("zaddxx" if xx else "zadd", key, member, score)
        return self

    def lrem(self, key: str, count: int, value: str) -> WriteBatch:
        return self._op("lrem", key, value, count)

    def expire(self, key: str, seconds: int) -> WriteBatch:
        return self._op("expire", key, int(seconds))

    def set(self, key: str, value: object, ex: int | None = None) -> WriteBatch:
        if ex is None:
            raise ValueError("WriteBatch.set needs ex= (bookkeeping keys always expire)")
        return self._op("setex", key, value, int(ex))

    def incr(self, key: str) -> WriteBatch:
        return self._op("incr", key)

    def zremrangebyscore(self, key: str, low: float | str, high: float | str) -> WriteBatch:
        return self._op("zremrangebyscore", key, low, high)

    def add_to(self, pipeline: Any) -> None:
        """Append the recorded writes to `pipeline` as one command (nothing if empty).

        `pipeline` may be a client (the writes are sent at once) or another WriteBatch (they
        join its writes, in order).
        """
        if isinstance(pipeline, WriteBatch):
            names = list(self._keys)
            for i in range(0, len(self._args), 4):
                name, index, a, b = self._args[i : i + 4]
                pipeline._op(name, names[int(index) - 1], a, b)
        elif self._args:
            pipeline.eval(_APPLY, len(self._keys), *self._keys, *self._args)


def _text(value: object) -> str:
    # As redis-py encodes arguments: a str subclass (rq's status enums) by its string value,
    # a float by repr.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return value.decode()
    if value is None or isinstance(value, bool):
        # redis-py refuses these too: writing "None" or "True" would corrupt a field silently.
        raise TypeError(f"WriteBatch: cannot write {value!r} to Redis")
    if isinstance(value, float):
        return repr(value)
    return str(value)
