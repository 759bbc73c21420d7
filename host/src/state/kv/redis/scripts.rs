//! The Lua scripts of the Redis backend. Redis runs a script alone, start
//! to end, so each one is a transaction: a write, its quota check, its
//! usage count and a bounded sweep of expired rows happen together or not
//! at all, whichever node sends them. The crate sends them as `EVALSHA`
//! and loads one again when Redis lost it (a restart).

use redis::Script;

/// Most expired rows of its service one write removes before it runs.
pub(super) const SWEEP_BATCH: usize = 64;

/// What every write script starts with.
///
/// `KEYS`: 1 the index (sorted set of every row's key, score 0), 2 the
/// expiry index (key → expiry in ms on Redis's clock), 3 the lengths of the
/// values of rows with an expiry (Redis drops such a value when it expires,
/// and the usage must still lose its bytes), 4 the usage (hash `keys`,
/// `bytes`), 5 the value key of the row written.
/// `ARGV`: 1 the prefix of the service's value keys, 2 the key written,
/// 3 `max_keys`, 4 `max_bytes`, then the operation's own.
///
/// First it removes up to [`SWEEP_BATCH`] rows of the service whose expiry
/// has passed, oldest first, so expired rows stop counting.
const PRELUDE: &str = r"
local index, expiry, lengths, usage, row = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local values, key = ARGV[1], ARGV[2]
local max_keys, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function int(n) return string.format('%d', n) end

local function row_bytes(k)
  local length = redis.call('HGET', lengths, k)
  if length then return #k + tonumber(length) end
  return #k + redis.call('STRLEN', values .. k)
end

local function remove(k)
  local bytes = row_bytes(k)
  redis.call('DEL', values .. k)
  redis.call('ZREM', index, k)
  redis.call('ZREM', expiry, k)
  redis.call('HDEL', lengths, k)
  if redis.call('HINCRBY', usage, 'keys', -1) <= 0 then
    redis.call('DEL', usage)
  else
    redis.call('HINCRBY', usage, 'bytes', int(-bytes))
  end
end

for _, k in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', '(' .. int(now), 'LIMIT', 0, SWEEP_BATCH)) do
  remove(k)
end

-- The bytes of the live row of `key`, or nil. A row whose value has
-- expired is removed here, so that the write treats the key as new.
local function live_row()
  if not redis.call('ZSCORE', index, key) then return nil end
  if redis.call('EXISTS', row) == 0 then
    remove(key)
    return nil
  end
  return row_bytes(key)
end

-- Why writing `new_bytes` over a live row of `old_bytes` (nil: a new row)
-- would take the service past its quota, or nil. A write that does not
-- grow what the service holds is never refused.
local function refusal(old_bytes, new_bytes)
  local used = redis.call('HMGET', usage, 'keys', 'bytes')
  local keys, bytes = tonumber(used[1] or 0), tonumber(used[2] or 0)
  if old_bytes == nil and keys >= max_keys then return {2403} end
  local after = bytes - (old_bytes or 0) + new_bytes
  if new_bytes > (old_bytes or 0) and after > max_bytes then return {2408, int(after)} end
  return nil
end

-- Writes `value` as the row of `key` over a live row of `old_bytes` (nil:
-- none), expiring at `at` in ms (nil: never).
local function put(old_bytes, value, at)
  if old_bytes == nil then
    redis.call('ZADD', index, 0, key)
    redis.call('HINCRBY', usage, 'keys', 1)
  end
  redis.call('HINCRBY', usage, 'bytes', int(#key + #value - (old_bytes or 0)))
  if at then
    redis.call('SET', row, value, 'PXAT', int(at))
    redis.call('ZADD', expiry, int(at), key)
    redis.call('HSET', lengths, key, #value)
  else
    redis.call('SET', row, value)
    redis.call('ZREM', expiry, key)
    redis.call('HDEL', lengths, key)
  end
end
";

/// `ARGV[5]` the value, `ARGV[6]` the time to live in ms or empty. `{0}`,
/// or a refusal `{2403}` / `{2408, bytes after}`.
const SET: &str = r"
local old = live_row()
local value = ARGV[5]
local refused = refusal(old, #key + #value)
if refused then return refused end
local at = nil
if ARGV[6] ~= '' then at = now + tonumber(ARGV[6]) end
put(old, value, at)
return {0}
";

/// `{0, 1}` when a live row was removed, `{0, 0}` when there was none.
const DELETE: &str = r"
if not redis.call('ZSCORE', index, key) then return {0, 0} end
local existed = redis.call('EXISTS', row)
remove(key)
return {0, existed}
";

/// `ARGV[5]` the delta; `KEYS[6]` a scratch key, where Redis's own `INCRBY`
/// adds with exact 64-bit arithmetic and overflow detection (Lua's numbers
/// are doubles). The counter keeps its row's expiry. `{0, new value}`;
/// `{2404, 'nan'}` for a value that is no decimal integer (read as Rust's
/// `i64` parse reads it: a sign, then digits, leading zeros allowed);
/// `{2404, 'overflow', counter}`; or a quota refusal. The value is read
/// with single-character searches only, never a pattern that backtracks:
/// a 1 MiB value costs one pass, not a stalled Redis.
const INCREMENT: &str = r"
local old = live_row()
local counter, at = '0', nil
if old then
  counter = redis.call('GET', row)
  local score = redis.call('ZSCORE', expiry, key)
  if score then at = tonumber(score) end
end
local sign, digits = string.sub(counter, 1, 1), counter
if sign == '+' or sign == '-' then digits = string.sub(counter, 2) end
if digits == '' or string.find(digits, '%D') then return {2404, 'nan'} end
local first = string.find(digits, '[1-9]')
if not first then digits = '0' else digits = string.sub(digits, first) end
if #digits > 19 then return {2404, 'nan'} end
if sign == '-' and digits ~= '0' then digits = '-' .. digits end
redis.call('SET', KEYS[6], digits)
local added = redis.pcall('INCRBY', KEYS[6], ARGV[5])
local new = redis.call('GET', KEYS[6])
redis.call('DEL', KEYS[6])
if type(added) == 'table' and added.err then
  if string.find(added.err, 'overflow') then return {2404, 'overflow', digits} end
  return {2404, 'nan'}
end
local refused = refusal(old, #key + #new)
if refused then return refused end
put(old, new, at)
return {0, new}
";

/// `ARGV[5]` `1` when a value is expected (`ARGV[6]`), `0` when the key
/// must be absent; `ARGV[7]` the new value, which never expires. `{0, 1}`
/// swapped, `{0, 0}` not, or a quota refusal.
const COMPARE_AND_SWAP: &str = r"
local old = live_row()
if ARGV[5] == '1' then
  if not old or redis.call('GET', row) ~= ARGV[6] then return {0, 0} end
elseif old then
  return {0, 0}
end
local value = ARGV[7]
local refused = refusal(old, #key + #value)
if refused then return refused end
put(old, value, nil)
return {0, 1}
";

/// One page of keys (or keys and values) in byte order from the index,
/// skipping rows whose value has expired.
///
/// `KEYS[1]` the index. `ARGV`: 1 the prefix of the service's value keys,
/// 2 and 3 the `ZRANGEBYLEX` bounds, 4 `1` to answer values too, 5 most
/// entries, 6 most bytes of values (a page holds at least one entry), 7
/// most index entries looked at. Answers `{cursor or false, key, [value,]
/// ...}`: the cursor is the page's last key when a live key follows it, or
/// the last key looked at when the look-up budget ran out first (Redis
/// serves nothing else while a script runs, so a service with many expired
/// rows not yet swept gets shorter pages, never a long stall).
const LIST: &str = r"
local index, values = KEYS[1], ARGV[1]
local low, high = ARGV[2], ARGV[3]
local with_values = ARGV[4] == '1'
local most, most_bytes, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local page, taken, bytes, seen, last = {false}, 0, 0, 0, false
while true do
  local batch = redis.call('ZRANGEBYLEX', index, low, high, 'LIMIT', 0, 256)
  for _, k in ipairs(batch) do
    local value
    if with_values then
      value = redis.call('GET', values .. k)
    else
      value = redis.call('EXISTS', values .. k) == 1
    end
    if value then
      if taken == most or (with_values and taken > 0 and bytes + #value > most_bytes) then
        page[1] = last
        return page
      end
      taken = taken + 1
      last = k
      page[#page + 1] = k
      if with_values then
        page[#page + 1] = value
        bytes = bytes + #value
      end
    end
    seen = seen + 1
    if seen == budget then
      page[1] = k
      return page
    end
  end
  if #batch < 256 then return page end
  low = '(' .. batch[#batch]
end
";

/// `KEYS` the value keys, `ARGV[1]` most bytes of values together. `{0,
/// value or false, ...}`, or `{1}` when the values are larger together: the
/// lengths are added first, so an oversized read sends nothing.
const GET_MANY: &str = r"
local bytes, most = 0, tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  bytes = bytes + redis.call('STRLEN', k)
  if bytes > most then return {1} end
end
local found = redis.call('MGET', unpack(KEYS))
table.insert(found, 1, 0)
return found
";

/// The backend's scripts, each hashed once.
#[derive(Debug)]
pub(super) struct Scripts {
    pub(super) set: Script,
    pub(super) delete: Script,
    pub(super) increment: Script,
    pub(super) compare_and_swap: Script,
    pub(super) list: Script,
    pub(super) get_many: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let prelude = PRELUDE.replace("SWEEP_BATCH", &SWEEP_BATCH.to_string());
        let write = |body: &str| Script::new(&format!("{prelude}{body}"));
        Self {
            set: write(SET),
            delete: write(DELETE),
            increment: write(INCREMENT),
            compare_and_swap: write(COMPARE_AND_SWAP),
            list: Script::new(LIST),
            get_many: Script::new(GET_MANY),
        }
    }
}
