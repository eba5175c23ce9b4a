-- parx.sync: placeholder until the module lands.
return require "parx.c.sync"
