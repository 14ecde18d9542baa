-- The time a script decides at, in µs: ARGV[1] when given (tests only),
-- else the Redis server's TIME (one clock for every process).
local function now_us(given)
  if given ~= '' then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

