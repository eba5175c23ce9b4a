-- parx.signal: placeholder until the module lands.
return require "parx.c.signal"
