-- parx.fs: placeholder until the module lands.
return require "parx.c.fs"
