-- wrk script of make lb-test: every request POSTs one Fashion-MNIST PNG to explain (Grad-CAM) and
-- every answer that is not 2xx is counted by status. At the end one line
--   WRK_RESULT {"requests":..,"duration_s":..,"non2xx":{"503":..},"errors":{...},"latency_ms":{...}}
-- is printed for tests/lb/lb_test.py (wrk's own summary is printed above it).
-- Environment: WRK_PNG (the image file), WRK_PATH (default below).
local path = os.getenv("WRK_PATH") or "/v1/models/fashion-cnn/explain?methods=gradcam"
local png = os.getenv("WRK_PNG")
local f = assert(io.open(png, "rb"), "cannot open WRK_PNG " .. tostring(png))
local body = f:read("*all")
f:close()

wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "image/png"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non2xx = {}   -- per thread: status -> count (read back by done() through thread:get)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    local k = tostring(status)
    non2xx[k] = (non2xx[k] or 0) + 1
  end
end

function done(summary, latency, requests)
  local counts = {}
  for _, t in ipairs(threads) do
    local n = t:get("non2xx")
    if n then
      for k, v in pairs(n) do counts[k] = (counts[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(counts) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_s":%.3f,"bytes":%d,"non2xx":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"mean":%.2f,"p50":%.2f,"p90":%.2f,"p99":%.2f,"max":%.2f}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1e3, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3))
end
