-- POST /api/v1/batch_predict with BENCH_ROWS rows, all different on every request.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(dir .. "common.lua")

tid = 0 -- replaced per thread by setup()
local counter = 0
local prefix = '{"model_name":"' .. bench.model .. '","features_batch":['

setup = bench.setup
done = bench.done

function request()
  counter = counter + 1
  local rows = {}
  for r = 1, bench.rows do
    rows[r] = bench.row(counter, r, tid)
  end
  return wrk.format("POST", "/api/v1/batch_predict", bench.headers, prefix .. table.concat(rows, ",") .. "]}")
end
