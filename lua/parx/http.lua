-- parx.http: placeholder until the module lands.
return require "parx.c.http"
