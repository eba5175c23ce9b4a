-- parx.pool: placeholder until the module lands.
return require "parx.c.pool"
