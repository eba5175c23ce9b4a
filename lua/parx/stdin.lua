-- parx.stdin: standard input as a parx stream, made on first use.
--
--   parx.stdin:read([n])   -> n bytes, or what is there; nil at the end
--   parx.stdin:readline()  -> the next line without "\n"; nil at the end
--   parx.stdin:lines()     -> for line in parx.stdin:lines() do ... end
--
-- A read parks only the task that reads; io.read and io.lines would block
-- every task of the VM while they wait.  Standard input must be a pipe, a
-- terminal or a socket; a regular file (`parx script.lua < file`) raises
-- here: it never blocks long, read it with io.read.  Read it from one VM.
local C = require "parx.c.process"

local stream, msg = C.stdin()
if stream == nil then error("parx.stdin: " .. msg, 0) end
return stream
