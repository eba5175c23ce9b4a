-- parx.process: child processes on libuv, from any task in any VM.
--
--   process.exec(cmd [, args [, opts]])
--       -> {status, signal, signame, stdout, stderr}
--       Runs cmd (looked up in PATH, no shell: use exec("sh", {"-c", s}))
--       with the list args, reads stdout and stderr to the end and waits for
--       the exit.  A non-zero status is not an error: check r.status.
--       A child killed by a signal has no status (r.status is nil): then
--       r.signal is the signal's number and r.signame its name ("kill",
--       "term", ...); both are nil for a child that exited by itself.
--       cmd, args, env names and values may not contain NUL bytes, nor env
--       names "=" (these raise).
--       opts.cwd      working directory
--       opts.env      {NAME = "value" | false}: changes to the current
--                     environment (false removes a variable)
--       opts.stdin    a string written to the child's stdin (then closed);
--                     "inherit" passes ours; default: empty (/dev/null)
--       opts.timeout  seconds (math.huge: no limit); past it the child gets
--                     SIGKILL and exec returns nil,
--                     "ETIMEDOUT: ...: cmd killed after N s", "ETIMEDOUT"
--       A command that cannot be started returns nil, "ENOENT: no such file
--       or directory: cmd", "ENOENT" (EACCES, ...); a cwd that is missing
--       (or not a directory, or not searchable) is named as the culprit:
--       "ENOENT: no such file or directory: cwd '/x' (for cmd)".
--       Output larger than one Lua string can hold (about 2 GiB) on stdout
--       or stderr returns nil, "EFBIG: ...", "EFBIG" (that pipe is closed
--       at the limit, so the child sees EPIPE).
--
--   process.spawn(cmd [, args [, opts]]) -> Process (or nil, err, code)
--       opts: cwd, env, timeout as above; opts.stdin, opts.stdout,
--       opts.stderr = "pipe" (default) | "inherit" | "ignore".
--       p.pid
--       p.stdin, p.stdout, p.stderr: parx.stream objects (the methods of a
--       TCP connection: read, readline, lines, write, shutdown, close,
--       closed), nil where the option was not "pipe":
--       p.stdin:write(data) -> true  (parks while the pipe is full)
--       p.stdin:close()              (the child sees the end of its input)
--       p.stdout:read()      -> whatever is available, nil at EOF
--       p.stdout:read(n)     -> n bytes (fewer at EOF), nil at EOF
--       p.stdout:read("a")   -> everything up to EOF ("" if nothing); nil,
--                               "EFBIG: ...", "EFBIG" past about 2 GiB (the
--                               data stays buffered for smaller reads)
--       p.stdout:readline()  -> a line without "\n", nil at EOF
--       p.stdout:lines()     -> iterator over lines
--       p.stderr: the same as stdout
--       p:wait()   -> status, nil when it exited by itself; nil, signal
--                     number, signal name when a signal killed it; or nil,
--                     "ETIMEDOUT: ...", "ETIMEDOUT" when opts.timeout did
--       p:kill([sig = "term"]) -> true  ("int", "kill", "usr1", 9, ...)
--       p:exited() -> whether it has exited
--   Output is read ahead (up to 1 MiB) once a task has read from a pipe;
--   beyond that, and before the first read, the child blocks when the
--   pipe is full, so read the pipes you asked for before (or while)
--   waiting.  A Process that is garbage collected does not kill the
--   child; its pipes close when they are collected.
--
--   process.kill(pid [, sig]) -> true: signal any process; pid must be a
--                                positive integer that fits a pid_t (0,
--                                negative and larger values raise: no
--                                process groups, never "everyone")
--   process.pid()             -> this process's id
local C = require "parx.c.process"

local setmetatable, type, error = setmetatable, type, error

local M = {exec = C.exec, kill = C.kill, pid = C.pid}

local Process = {}
Process.__index = Process

function Process:wait() return self.h:wait() end
function Process:kill(sig) return self.h:kill(sig) end
function Process:exited() return self.h:exited() end
Process.__tostring = function(p)
  return "parx.process (pid " .. tostring(p.pid) .. ")"
end

function M.spawn(cmd, args, opts)
  local h, stdin, stdout, stderr = C.spawn(cmd, args, opts)
  if not h then return nil, stdin, stdout end
  return setmetatable({h = h, pid = h:pid(), stdin = stdin, stdout = stdout, stderr = stderr}, Process)
end

return M
