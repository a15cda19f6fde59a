-- bench/proxy.lua: the same GET, with the same headers, against every target of bench/run.
--
--   wrk ... -s bench/proxy.lua http://127.0.0.1:PORT/path -- API_KEY ID1,ID2,...
--
-- Every request carries `Authorization: Bearer API_KEY` and `Connection-Id: <id>`, rotating over
-- the ids (each wrk thread starts at a different one). nginx ignores both headers (the nginx proxy
-- replaces Authorization with the Hex token), so all three targets read identical request bytes.
-- Requests are formatted once in init(); no response() hook, so wrk stays on its fast path.

local next_thread = 0

function setup(thread)
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

local requests = {}
local i = 0

function init(args)
  local key = args[1]
  local ids = {}
  for id in string.gmatch(args[2] or "", "[^,]+") do
    ids[#ids + 1] = id
  end
  if #ids == 0 then
    ids[1] = false
  end
  for _, id in ipairs(ids) do
    local headers = {}
    if key and key ~= "" and key ~= "-" then
      headers["Authorization"] = "Bearer " .. key
    end
    if id then
      headers["Connection-Id"] = id
    end
    requests[#requests + 1] = wrk.format("GET", wrk.path, headers)
  end
  i = (thread_index or 0) % #requests
end

function request()
  i = i % #requests + 1
  return requests[i]
end

-- Once, at the end: the tail wrk's --latency table leaves out (microseconds).
function done(summary, latency, requests)
  io.write(string.format("tail-latency-us p99.9 %d max %d\n", latency:percentile(99.9), latency.max))
end
