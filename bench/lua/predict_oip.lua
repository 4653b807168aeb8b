-- POST /v2/models/<BENCH_MODEL>/infer (Open Inference Protocol V2, e.g. MLServer) with one
-- FP32 row of shape [1, BENCH_N_FEATURES], different on every request (as predict_miss.lua).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(dir .. "common.lua")

tid = 0 -- replaced per thread by setup()
local counter = 0
local path = "/v2/models/" .. bench.model .. "/infer"
local prefix = '{"inputs":[{"name":"input-0","shape":[1,' .. bench.n_features .. '],"datatype":"FP32","data":'

setup = bench.setup
done = bench.done

function request()
  counter = counter + 1
  return wrk.format("POST", path, bench.headers, prefix .. bench.row(counter, 0, tid) .. "}]}")
end
