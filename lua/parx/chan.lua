-- parx.chan: placeholder until the module lands.
return require "parx.c.chan"
