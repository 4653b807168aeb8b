module rtml/bench/openloop

go 1.22
