-- Shared by the bench's wrk scripts: request bodies and a machine-readable summary.
--
-- Parameters come from the environment (set by bench/wrk.py):
--   BENCH_MODEL       model_name in the body (default iris_classifier)
--   BENCH_N_FEATURES  features per row (default 4)
--   BENCH_ROWS        rows per batch_predict body (default 64)
--   BENCH_SALT        distinct per wrk run, so no two runs send the same features
local M = {}

M.model = os.getenv("BENCH_MODEL") or "iris_classifier"
M.n_features = tonumber(os.getenv("BENCH_N_FEATURES") or "4")
M.rows = tonumber(os.getenv("BENCH_ROWS") or "64")
M.salt = tonumber(os.getenv("BENCH_SALT") or "0")
M.headers = { ["Content-Type"] = "application/json" }

-- A feature row unique per (counter, row index, wrk thread, salt), in iris-like ranges:
-- f0/f1 encode the counter (8.64 million distinct values), f2 the row index, f3 salt and thread.
function M.row(counter, r, tid)
  local v = {
    string.format("%.3f", 4.3 + (counter % 3600) * 0.001),
    string.format("%.3f", 2.0 + (math.floor(counter / 3600) % 2400) * 0.001),
    string.format("%.2f", 1.0 + (r % 500) * 0.01),
    string.format("%.5f", 0.1 + (M.salt % 1000) * 0.001 + (tid % 100) * 0.00001),
  }
  for i = 5, M.n_features do
    v[i] = string.format("%.2f", 0.5 + (i % 7) * 0.1)
  end
  return "[" .. table.concat(v, ",", 1, M.n_features) .. "]"
end

-- The same row every time (cache-hit scenario).
function M.fixed_row()
  local v = { "5.1", "3.5", "1.4", "0.2" }
  for i = 5, M.n_features do
    v[i] = "0.5"
  end
  return "[" .. table.concat(v, ",", 1, M.n_features) .. "]"
end

-- Give every wrk thread its own id (global `tid` in the thread's Lua state).
local next_tid = 0
function M.setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

-- One line for bench/wrk.py to parse; latencies in microseconds.
function M.done(summary, latency, _requests)
  local e = summary.errors
  local function us(x) return math.floor(x + 0.5) end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,'
      .. '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    us(latency:percentile(50)), us(latency:percentile(90)), us(latency:percentile(99)),
    us(latency:percentile(99.9)), latency.mean, us(latency.max)
  ))
end

return M
