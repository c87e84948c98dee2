-- wrk script (bench/run.py, scenario http_wrk_pipelined): HTTP/1.1 pipelining. Each write on
-- a connection carries DEPTH GET requests back to back (the script's argument, default 16);
-- wrk counts every response, so Requests/sec is responses per second.
--   wrk -t1 -c64 -d2s http://127.0.0.1:PORT/ -s bench/load/pipeline.lua -- 16
local batch

function init(args)
  local depth = tonumber(args[1]) or 16
  local requests = {}
  for i = 1, depth do
    requests[i] = wrk.format(nil, "/")
  end
  batch = table.concat(requests)
end

function request()
  return batch
end
