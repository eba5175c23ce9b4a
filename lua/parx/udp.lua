-- parx.udp: placeholder until the module lands.
return require "parx.c.udp"
