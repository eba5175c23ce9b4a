-- parx.process: placeholder until the module lands.
return require "parx.c.process"
