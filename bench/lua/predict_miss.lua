-- POST /api/v1/predict with a different feature vector on every request (all cache misses).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(dir .. "common.lua")

tid = 0 -- replaced per thread by setup()
local counter = 0
local prefix = '{"model_name":"' .. bench.model .. '","use_cache":true,"features":'

setup = bench.setup
done = bench.done

function request()
  counter = counter + 1
  return wrk.format("POST", "/api/v1/predict", bench.headers, prefix .. bench.row(counter, 0, tid) .. "}")
end
