-- wrk: sends the requests of the file given after `--` (one "path?query<TAB>body" per line,
-- as scripts/traffic/sign.py writes them) in turn.
local reqs = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]*)\t(.*)$")
    reqs[#reqs + 1] = wrk.format("POST", path, {["Content-Type"] = "text/xml"}, body)
  end
end
function request()
  i = i % #reqs + 1
  return reqs[i]
end
