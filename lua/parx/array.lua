-- parx.array: placeholder until the module lands.
return require "parx.c.array"
