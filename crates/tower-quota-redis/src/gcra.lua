-- GCRA over several cells at once, all or nothing, in integer microseconds.
--
-- KEYS[3i-2]  cell i's theoretical arrival time (TAT)
-- KEYS[3i-1]  cell i's shared interval (a learned pace), if any processes shared one
-- KEYS[3i]    cell i's shared hold: until when every process waits
-- ARGV[1]  "" to use the server's TIME, or a time in µs (tests only)
-- ARGV[2]  catch-up credit in µs: a head late by up to this much keeps the schedule
-- ARGV[3 + 4(i-1)] .. ARGV[6 + 4(i-1)]
--          cell i's interval, burst, tolerance ((burst - 1) x interval, as
--          the caller paces) and cost. A shared interval replaces the
--          interval given; the tolerance is then the lesser of the two, so
--          a caller's larger burst never outruns a slower shared pace. A
--          cost above the burst goes once a whole burst is free and is
--          charged in full.
--
-- Returns {1, 0} when every cell was charged, or {0, wait_us} when none
-- was and the earliest grant is wait_us from now.
local now = now_us(ARGV[1])
local credit = tonumber(ARGV[2])
local cells = #KEYS / 3
local wait = 0
local next_tat = {}
for i = 1, cells do
  local at = 3 + (i - 1) * 4
  local interval = tonumber(redis.call('GET', KEYS[3 * i - 1])) or tonumber(ARGV[at])
  local burst = tonumber(ARGV[at + 1])
  local tau = math.min((burst - 1) * interval, tonumber(ARGV[at + 2]))
  local cost = tonumber(ARGV[at + 3])
  local check = math.min(cost, burst)
  local hold = tonumber(redis.call('GET', KEYS[3 * i])) or 0
  local tat = tonumber(redis.call('GET', KEYS[3 * i - 2])) or now
  local allow_at = math.max(tat + (check - 1) * interval - tau, hold)
  if allow_at > now then
    wait = math.max(wait, allow_at - now)
  else
    next_tat[i] = math.max(tat, now - credit) + cost * interval
  end
end
if wait > 0 then
  return {0, string.format('%d', math.ceil(wait))}
end
for i = 1, cells do
  -- Once now passes the TAT the cell is as good as new: let it expire then.
  local ttl_ms = math.ceil(math.max(next_tat[i] - now, 0) / 1000) + 10
  redis.call('SET', KEYS[3 * i - 2], string.format('%d', next_tat[i]), 'PX', string.format('%d', ttl_ms))
end
return {1, '0'}
