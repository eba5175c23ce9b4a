-- parx.gpu: placeholder until the module lands.
return require "parx.c.gpu"
