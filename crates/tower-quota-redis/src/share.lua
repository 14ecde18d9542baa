-- What one process learned about a cell, shared with every process.
--
-- KEYS[1]  the cell's shared interval in µs (its learned pace, after the margin)
-- KEYS[2]  the cell's shared hold: until when (server µs) every process waits
-- ARGV[1]  "" to use the server's TIME, or a time in µs (tests only)
-- ARGV[2]  how the pace moved: "" (it did not), "set" (the server said so),
--          "slower" (a cut: taken unless already slower), "faster" (growth
--          from ARGV[4]: taken only if the shared interval still is that)
-- ARGV[3]  the new interval in µs
-- ARGV[4]  with "faster", the interval the growth started from
-- ARGV[5]  a hold in µs from now, or "" for none
-- ARGV[6]  how long a shared interval lives without news, in ms
--
-- Returns the shared interval afterwards, or "" when there is none.
local now = now_us(ARGV[1])
local shared = tonumber(redis.call('GET', KEYS[1]))
local move = ARGV[2]
local new = tonumber(ARGV[3])
local take = false
if move == 'set' then
  take = true
elseif move == 'slower' then
  take = shared == nil or new > shared
elseif move == 'faster' then
  take = shared == nil or shared == tonumber(ARGV[4])
end
if take then
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', ARGV[6])
  shared = new
elseif shared ~= nil then
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
if ARGV[5] ~= '' then
  local until_us = now + tonumber(ARGV[5])
  local held = tonumber(redis.call('GET', KEYS[2])) or 0
  if until_us > held then
    local ttl_ms = math.ceil(tonumber(ARGV[5]) / 1000) + 10
    redis.call('SET', KEYS[2], string.format('%d', until_us), 'PX', string.format('%d', ttl_ms))
  end
end
if shared == nil then
  return ''
end
return string.format('%d', shared)
