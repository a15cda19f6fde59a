-- bench/connect.lua: POST /v1/connect with a different Hex token (and end user) in every request.
--
--   wrk ... -s bench/connect.lua http://127.0.0.1:PORT/v1/connect -- TOKENS_FILE API_KEY PREFIX THREADS
--
-- TOKENS_FILE holds one token per line (fake-hex --tokens N --tokens-file PATH). With THREADS wrk
-- threads, thread t sends tokens t+1, t+1+THREADS, ... so no token is sent twice; the end user is
-- PREFIX-<line number>. A thread that runs out of tokens stops (bench/run then warns: the rate is
-- understated; raise BENCH_CONNECT_TOKENS). done() prints one line bench/run parses:
--   connect-statuses 201=<n> 200=<n> other=<n> first_other=<status> exhausted_threads=<n>

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
  threads[#threads + 1] = thread
end

local tokens = {}
local pos, step = 1, 1
local prefix = "bench-connect"
n201, n200, nother, first_other, exhausted = 0, 0, 0, 0, 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  file:close()
  prefix = args[3] or prefix
  step = tonumber(args[4] or "1")
  pos = (thread_index or 0) + 1
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  if pos > #tokens then
    -- Out of tokens: stop this thread (the request returned below may still go out; it repeats a
    -- token already sent, which answers 200 and is counted apart).
    if exhausted == 0 then
      exhausted = 1
      wrk.thread:stop()
    end
    pos = pos - step
  end
  local body = string.format('{"subdomain":"demo","token":"%s","end_user_id":"%s-%d"}', tokens[pos], prefix, pos)
  pos = pos + step
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 201 then
    n201 = n201 + 1
  elseif status == 200 then
    n200 = n200 + 1
  else
    nother = nother + 1
    if first_other == 0 then
      first_other = status
    end
  end
end

function done(summary, latency, requests)
  local a, b, c, first, ex = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    a = a + thread:get("n201")
    b = b + thread:get("n200")
    c = c + thread:get("nother")
    ex = ex + thread:get("exhausted")
    if first == 0 then
      first = thread:get("first_other")
    end
  end
  io.write(string.format("connect-statuses 201=%d 200=%d other=%d first_other=%d exhausted_threads=%d\n", a, b, c, first, ex))
end
