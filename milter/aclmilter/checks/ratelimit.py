# SPDX-License-Identifier: GPL-3.0-or-later
"""Exim's `ratelimit`: argument syntax, the per-stage option rules, the EWMA and its stores.

Sans-I/O core (no clock, no sockets): `parse_spec` (load time), `plan` (run time: which
per_* mode, count, unique value and update mode apply at this stage), `advance` (one EWMA
step with Exim's leaky/strict/readonly write rule and the `unique=` Bloom filter).

Stores apply `advance` atomically to a shared record and return the new rate:
`MemoryStore` (one process, a lock) and `RedisStore` (a server-side Lua script doing the
same arithmetic, so several milter processes or hosts share one rate without lost updates).
The time always comes from the caller (`services.clock()`), never from the store.
"""

from __future__ import annotations

import enum
import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from .. import lazy
from ..errors import SyntaxProblem
from ..stages import Stage

hashlib = lazy.module("hashlib")     # the Bloom filter's digest, on first unique= use (lazy.py)

#: Exim's minimum Bloom filter size in bytes (the fixed part of its unique-rate record).
BLOOM_MIN_BYTES = 40
BLOOM_HASHES = 8

PER_OPTIONS = ("per_addr", "per_byte", "per_cmd", "per_conn", "per_mail", "per_rcpt")
MODE_OPTIONS = ("leaky", "strict", "readonly")


class UpdateMode(enum.Enum):
    """When the stored rate is written back (Exim's leaky/strict/readonly)."""

    LEAKY = "leaky"        # written only while under the limit
    STRICT = "strict"      # always written
    READONLY = "readonly"  # never written; the event counts 0 (decay only)


class Scope(enum.Enum):
    """Where a computed rate is memoised, as Exim's three trees (acl.c)."""

    CONNECTION = "connection"   # per_conn: kept across messages
    MESSAGE = "message"         # per_mail, per_byte, per_rcpt after RCPT
    COMMAND = "command"         # per_cmd, per_rcpt/per_addr at RCPT, every readonly check


class StoreUnavailable(Exception):
    """The shared store could not be read or written now (the condition DEFERs)."""


# ---- load-time syntax ----------------------------------------------------------------------
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_TIME = re.compile(r"(?:\d+[wdhms])+")
_TIME_PART = re.compile(r"(\d+)([wdhms])")
_UNIT = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE = {"k": 1024.0, "m": 1024.0 ** 2, "g": 1024.0 ** 3}


@dataclass(frozen=True)
class RatelimitSpec:
    """A parsed `m / p / options / key` argument (stage-independent, built once at load).

    `options` keeps per_*/count=/unique= in written order because Exim applies them in
    order (`count=` before or after `per_rcpt` gives different counts).
    """

    limit: float
    limit_text: str
    period: float
    period_text: str
    options: tuple[tuple[str, str], ...]   # (name, value) for per_*, count, unique in order
    update: UpdateMode | None              # leaky/strict/readonly as written, None if omitted
    noupdate: bool
    key: str | None                        # None: the default key $sender_host_address


def parse_limit(text: str) -> float:
    """Exim's `m`: a non-negative real with an optional K/M/G (x1024^n) suffix."""
    t = text.strip()
    mult = 1.0
    if t and t[-1].lower() in _SIZE:
        mult, t = _SIZE[t[-1].lower()], t[:-1]
    if not _NUMBER.fullmatch(t):
        raise SyntaxProblem(f"ratelimit: \"{text.strip()}\" is not a positive number")
    return float(t) * mult


def parse_period(text: str) -> float:
    """Exim's time interval `[Nw][Nd][Nh][Nm][Ns]`; a bare number or zero is an error."""
    t = text.strip()
    if not _TIME.fullmatch(t):
        raise SyntaxProblem(f"ratelimit: \"{t}\" is not a time value")
    seconds = sum(int(n) * _UNIT[u] for n, u in _TIME_PART.findall(t))
    if seconds <= 0:
        raise SyntaxProblem(f"ratelimit: \"{t}\" is not a time value")
    return float(seconds)


def _split_arg(text: str) -> tuple[list[str], list[int]]:
    """Split on `/` (or the separator set by a leading `<c`), trimming each item; offsets kept."""
    sep = "/"
    start = 0
    stripped = text.lstrip()
    if len(stripped) >= 2 and stripped[0] == "<" and not stripped[1].isalnum() and not stripped[1].isspace():
        sep = stripped[1]
        start = len(text) - len(stripped) + 2
    items: list[str] = []
    offsets: list[int] = []
    pos = start
    for raw in text[start:].split(sep):
        items.append(raw.strip())
        offsets.append(pos + (len(raw) - len(raw.lstrip())))
        pos += len(raw) + 1
    return items, offsets


def parse_spec(text: str) -> RatelimitSpec:
    """Parse `m / p / options / key`; raises SyntaxProblem (offset inside the text).

    Errors found here (Exim reports the same ones, at run time): missing m or p, bad
    number, bad time, `count=` not a non-negative number, two per_* options ("conflicting
    per_* options"), two of leaky/strict/readonly ("conflicting update modes").
    """
    items, offsets = _split_arg(text)
    if len(items) < 2 or not items[0] or not items[1]:
        raise SyntaxProblem("ratelimit: expected m / p [/ options] [/ key]")
    try:
        limit = parse_limit(items[0])
    except SyntaxProblem as exc:
        raise SyntaxProblem(str(exc), offsets[0]) from None
    try:
        period = parse_period(items[1])
    except SyntaxProblem as exc:
        raise SyntaxProblem(str(exc), offsets[1]) from None
    options: list[tuple[str, str]] = []
    modes: list[UpdateMode] = []
    noupdate = False
    key_parts: list[str] = []
    per_seen = 0
    for item, off in zip(items[2:], offsets[2:], strict=True):
        low = item.lower()
        if low in MODE_OPTIONS:
            modes.append(UpdateMode(low))
        elif low == "noupdate":
            noupdate = True
        elif low in PER_OPTIONS:
            per_seen += 1
            if per_seen > 1:
                raise SyntaxProblem("ratelimit: conflicting per_* options", off)
            options.append((low, ""))
        elif low.startswith("count="):
            value = item[6:]
            if not _NUMBER.fullmatch(value):
                raise SyntaxProblem(f"ratelimit: \"{item}\" is not a positive number", off)
            options.append(("count", value))
        elif low.startswith("unique="):
            options.append(("unique", item[7:]))
        elif item:
            key_parts.append(item)   # any other token is (part of) the key, re-joined with "/"
    if len(modes) > 1:
        raise SyntaxProblem("ratelimit: conflicting update modes")
    return RatelimitSpec(limit, items[0], period, items[1], tuple(options), modes[0] if modes else None,
                         noupdate, "/".join(key_parts) if key_parts else None)


# ---- run-time plan -------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What one evaluation does: the database key, the count, the update mode, the cache scope."""

    db_key: str
    count: float
    update: UpdateMode
    unique: str | None
    scope: Scope


class PlanError(Exception):
    """The options are not usable at this stage (Exim: ERROR at run time)."""


_MESSAGE_AFTER_RCPT = Stage.PREDATA | Stage.DATA | Stage.DELIVER
_NON_MESSAGE = Stage.CONNECT | Stage.HELO


def plan(spec: RatelimitSpec, stage: Stage, *, client_address: str, recipients_count: int,
         message_size: int, recipient: str) -> Plan:
    """Apply Exim's per-stage option rules (acl.c acl_ratelimit) to a parsed spec.

    Options are applied in written order. A per_* option used where it cannot count
    (per_mail/per_byte before MAIL, per_rcpt before RCPT, per_addr outside RCPT) forces
    readonly; asking for leaky/strict there is an error unless `noupdate` is also given.
    Returns the Plan; raises PlanError for that error.
    """
    mode = "per_mail"
    count = 1.0
    unique: str | None = None
    badacl = False
    per_given = ""
    for name, value in spec.options:
        if name == "count":
            count = float(value)
        elif name == "unique":
            unique = value
        else:
            per_given = name
            if name in ("per_cmd", "per_conn"):
                mode = name
            elif name == "per_mail":
                mode = "per_mail"
                badacl = bool(stage & _NON_MESSAGE)
            elif name == "per_byte":
                mode = "per_mail"    # Exim records per_byte under per_mail
                if stage & _NON_MESSAGE:
                    badacl = True
                else:
                    count = float(max(message_size, 0))
            elif name == "per_rcpt":
                mode = "per_rcpt"
                if stage & _MESSAGE_AFTER_RCPT:
                    count = float(recipients_count)
                elif not stage & Stage.RCPT:
                    badacl = True
            elif name == "per_addr":
                mode = "per_rcpt"
                if stage & Stage.RCPT:
                    unique = recipient
                else:
                    badacl, unique = True, "*"
    if badacl and spec.update in (UpdateMode.LEAKY, UpdateMode.STRICT) and not spec.noupdate:
        raise PlanError(f"ratelimit: \"{per_given}\" must not have /leaky or /strict option, "
                        f"or cannot be used in the {stage.key} ACL")
    if spec.noupdate or badacl or spec.update is UpdateMode.READONLY:
        update = UpdateMode.READONLY
        count = 0.0
    elif spec.update is UpdateMode.STRICT:
        update = UpdateMode.STRICT
    else:
        update = UpdateMode.LEAKY
    key = spec.key if spec.key is not None else client_address
    db_key = f"{spec.period_text}/{mode}/{'unique/' if unique is not None else ''}{key}"
    if update is UpdateMode.READONLY:
        scope = Scope.COMMAND
    elif mode == "per_conn":
        scope = Scope.CONNECTION
    elif mode == "per_mail" or (mode == "per_rcpt" and stage & _MESSAGE_AFTER_RCPT):
        scope = Scope.MESSAGE
    else:
        scope = Scope.COMMAND
    return Plan(db_key, count, update, unique, scope)


# ---- the EWMA ------------------------------------------------------------------------------
def bloom_hashes(value: str) -> tuple[int, ...]:
    """The 8 Bloom probe values for a unique= value: h1 + n*h2 from its MD5 (Exim's scheme)."""
    digest = hashlib.md5(value.encode("utf-8", "surrogateescape")).digest()
    h1 = digest[0] | digest[1] << 8
    h2 = digest[2] | digest[3] << 8
    return tuple(h1 + n * h2 for n in range(BLOOM_HASHES))


def bloom_size(limit: float) -> int:
    """Bytes of a new filter: 16 bits per event allowed by the limit, never below the minimum."""
    return max(int(limit) * 2, BLOOM_MIN_BYTES)


@dataclass(frozen=True)
class RateRecord:
    """A stored rate: the smoothed rate, when it was computed, and the unique= filter if any."""

    rate: float
    stamp: float
    bloom_epoch: int | None = None
    bloom: bytes | None = None


@dataclass(frozen=True)
class Step:
    """The outcome of one event: the rate to compare with m, and the record to store (or None)."""

    rate: float
    write: RateRecord | None


def ewma(old_rate: float, old_stamp: float, now: float, period: float, count: float) -> float:
    """Exim's rate update: a = e^(-i/p); rate = (1-a)*count/(i/p) + a*old, floored at count."""
    interval = now - old_stamp
    if interval <= 0:
        interval = 1e-9     # the clock went backwards or did not move: avoid NaN like Exim
    i_over_p = interval / period
    a = math.exp(-i_over_p)
    rate = (1 - a) * count / i_over_p + a * old_rate
    return count if rate < count else rate


def advance(record: RateRecord | None, now: float, period: float, limit: float, count: float,
            update: UpdateMode, hashes: tuple[int, ...] | None) -> Step:
    """One ratelimit event. Returns the new rate and the record to write (None: write nothing).

    Leaky writes only when the result is under the limit (an over-limit event leaves no
    trace, not even its unique= value); strict always writes; readonly never does and
    counts 0. A unique= value already in this period's Bloom filter counts 0; the filter is
    discarded once older than one period.
    """
    bloom: bytearray | None = None
    epoch: int | None = None
    if hashes is not None:
        whole_now = int(math.floor(now))
        if record is not None and record.bloom is not None and record.bloom_epoch is not None \
                and not whole_now > record.bloom_epoch + period:
            bloom, epoch = bytearray(record.bloom), record.bloom_epoch
        else:
            bloom, epoch = bytearray(bloom_size(limit)), whole_now
        if update is not UpdateMode.READONLY:
            seen = True
            for h in hashes:
                byte, bit = (h // 8) % len(bloom), 1 << (h % 8)
                if not bloom[byte] & bit:
                    bloom[byte] |= bit
                    seen = False
            if seen:
                count = 0.0
    if record is None:
        rate = count
    else:
        rate = ewma(record.rate, record.stamp, now, period, count)
    over = rate >= limit
    write = update is UpdateMode.STRICT or (update is UpdateMode.LEAKY and not over)
    if not write:
        return Step(rate, None)
    return Step(rate, RateRecord(rate, now, epoch, bytes(bloom) if bloom is not None else None))


def record_lifetime(rate: float, period: float) -> float:
    """Seconds after which a record no longer matters (its weight e^(-t/p)*rate < ~2e-9).

    Used as the Redis TTL and for pruning the in-process store: an expired record behaves
    as "no record" (rate = count), which after that long is what the EWMA gives anyway.
    """
    return period * (math.log1p(max(rate, 0.0)) + 20.0)


# ---- stores --------------------------------------------------------------------------------
class RateStore(Protocol):
    """Applies `advance` atomically to the record under `key`; returns the rate."""

    shared: bool     # other processes see its records (a simulation must not write them)

    def update(self, key: str, now: float, period: float, limit: float, count: float,
               update: UpdateMode, hashes: tuple[int, ...] | None) -> float: ...


class MemoryStore:
    """A thread-safe in-process store (used when no Redis is configured).

    Rates are shared by the threads of one process only. Records are pruned once their
    lifetime has passed (checked every `prune_every` updates), so memory stays bounded by
    the number of active keys.
    """

    #: private to this process: a simulation may update it (nothing else sees it)
    shared = False

    def __init__(self, prune_every: int = 4096) -> None:
        # key -> (record, period it was written with; needed to know when it expires)
        self._records: dict[str, tuple[RateRecord, float]] = {}
        self._lock = threading.Lock()
        self._updates = 0
        self._prune_every = prune_every

    def update(self, key: str, now: float, period: float, limit: float, count: float,
               update: UpdateMode, hashes: tuple[int, ...] | None) -> float:
        with self._lock:
            held = self._records.get(key)
            step = advance(held[0] if held else None, now, period, limit, count, update, hashes)
            if step.write is not None:
                self._records[key] = (step.write, period)
            self._updates += 1
            if self._updates % self._prune_every == 0:
                self._prune(now)
            return step.rate

    def _prune(self, now: float) -> None:
        for key, (rec, period) in list(self._records.items()):
            if now - rec.stamp > record_lifetime(rec.rate, period):
                del self._records[key]

    def record(self, key: str) -> RateRecord | None:
        """The stored record (for tests and diagnostics)."""
        with self._lock:
            held = self._records.get(key)
            return held[0] if held else None

    def __len__(self) -> int:
        return len(self._records)


# The Lua twin of `advance`. KEYS[1]: hash {rate, time, epoch, size}; KEYS[2]: Bloom bits.
# ARGV: now, period, limit, count, update mode, then the Bloom probe values (none: no unique).
# Numbers cross the boundary as "%.17g" text: a Lua number returned to Redis would be
# truncated to an integer reply.
_LUA = r"""
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local mode = ARGV[5]
local nh = #ARGV - 5
local rec = redis.call('HMGET', KEYS[1], 'rate', 'time', 'epoch', 'size')
local old_rate, old_time = tonumber(rec[1]), tonumber(rec[2])
local epoch, size = tonumber(rec[3]), tonumber(rec[4])
local fresh = false
local offsets = {}
if nh > 0 then
  local whole = math.floor(now)
  if (not old_rate) or (not epoch) or (not size) or whole > epoch + period then
    epoch = whole
    size = math.max(math.floor(limit) * 2, 40)
    fresh = true
  end
  if mode ~= 'readonly' then
    local seen = true
    for n = 1, nh do
      local h = tonumber(ARGV[5 + n])
      local off = (math.floor(h / 8) % size) * 8 + (h % 8)
      offsets[#offsets + 1] = off
      if fresh or redis.call('GETBIT', KEYS[2], off) == 0 then
        seen = false
      end
    end
    if seen then count = 0 end
  end
end
local rate
if not old_rate or not old_time then
  rate = count
else
  local interval = now - old_time
  if interval <= 0 then interval = 1e-9 end
  local iop = interval / period
  local a = math.exp(-iop)
  rate = (1 - a) * count / iop + a * old_rate
  if rate < count then rate = count end
end
local over = rate >= limit
local write = (mode == 'strict') or (mode == 'leaky' and not over)
local text = string.format('%.17g', rate)
if write then
  local ttl = math.ceil(period * (math.log(1 + math.max(rate, 0)) + 20) * 1000)
  redis.call('HSET', KEYS[1], 'rate', text, 'time', ARGV[1])
  if nh > 0 then
    if fresh then redis.call('DEL', KEYS[2]) end
    for _, off in ipairs(offsets) do redis.call('SETBIT', KEYS[2], off, 1) end
    redis.call('HSET', KEYS[1], 'epoch', epoch, 'size', size)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return text
"""


class RedisStore:
    """Rates in Redis, updated by one atomic Lua script per event (EVALSHA, EVAL fallback).

    Keys: `<prefix>{<exim key>}` (a hash) and `<prefix>{<exim key>}:bloom`; the braces make
    both keys one Redis Cluster slot. Raises StoreUnavailable when Redis cannot answer.
    """

    #: shared with every other milter process: a simulation writes nothing here
    shared = True

    def __init__(self, client: Any, prefix: str = "aclmilter:ratelimit:") -> None:
        """`client` is a clients.redis.RedisClient."""
        from ..clients.redis import Script
        self._client = client
        self._prefix = prefix
        self._script = Script(_LUA)

    def keys_for(self, key: str) -> tuple[str, str]:
        """The Redis key names used for one Exim ratelimit key."""
        base = f"{self._prefix}{{{key}}}"
        return base, base + ":bloom"

    def update(self, key: str, now: float, period: float, limit: float, count: float,
               update: UpdateMode, hashes: tuple[int, ...] | None) -> float:
        from ..clients.redis import RedisUnavailable
        args: list[str] = [repr(float(now)), repr(float(period)), repr(float(limit)), repr(float(count)),
                           update.value]
        if hashes is not None:
            args.extend(str(h) for h in hashes)
        try:
            reply = self._client.run_script(self._script, self.keys_for(key), args)
        except RedisUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc
        return float(reply.decode() if isinstance(reply, bytes) else reply)


__all__ = ["RatelimitSpec", "Plan", "PlanError", "RateRecord", "Step", "UpdateMode", "Scope",
           "StoreUnavailable", "parse_spec", "plan", "advance", "ewma", "bloom_hashes", "bloom_size",
           "record_lifetime", "MemoryStore", "RedisStore"]
