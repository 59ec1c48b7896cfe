-- wrk script for bench/compare: POST one body file, rotating bearer tokens.
-- env: BENCH_BODY (file), BENCH_TYPE (content type), BENCH_TOKENS (file, optional)
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local tokens = {}
local tfile = os.getenv("BENCH_TOKENS")
if tfile and tfile ~= "" then
  for line in io.lines(tfile) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
end
local body = slurp(os.getenv("BENCH_BODY"))
local ctype = os.getenv("BENCH_TYPE")
local counter = 0

function setup(thread)
  thread:set("offset", counter)
  counter = counter + 97
end

function init(args)
  i = offset or 0
end

function request()
  local headers = { ["Content-Type"] = ctype }
  if #tokens > 0 then
    i = i + 1
    headers["Authorization"] = tokens[(i % #tokens) + 1]
  end
  return wrk.format("POST", "/v1/traces", headers, body)
end

function done(summary, latency, requests)
  -- One machine-readable line for the runner.
  io.write(string.format("BENCH requests=%d errors=%d non2xx=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
