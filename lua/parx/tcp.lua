-- parx.tcp: placeholder until the module lands.
return require "parx.c.tcp"
