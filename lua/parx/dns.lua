-- parx.dns: placeholder until the module lands.
return require "parx.c.dns"
