-- parx.timer: placeholder until the module lands.
return require "parx.c.timer"
