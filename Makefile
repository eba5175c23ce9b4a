# parx -- one GNU Makefile.  `make help` lists the targets.
#
# Sections are owned by area (core, CLI, modules, GPU, bench); keep edits
# inside your section so parallel work does not collide.

Q ?= @
CC ?= cc
BUILD ?= build
PREFIX ?= /usr/local
LUAJIT ?= luajit

# ---- flags ------------------------------------------------------------
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wno-unused-parameter
PKGS := luajit libuv libcurl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS := -std=gnu11 -fPIC -pthread $(WARN) $(CFLAGS) $(PKG_CFLAGS) \
  -I/usr/include/x86_64-linux-gnu -Iruntime -Iruntime/core $(EXTRA_CFLAGS)
LIBS := $(PKG_LIBS) -lopenblas -ledit -lm -ldl -lpthread $(EXTRA_LIBS)
LDFLAGS ?=

# ---- sources ----------------------------------------------------------
CLI_SRC := $(wildcard runtime/cli/*.c)
LIB_SRC := $(filter-out $(CLI_SRC),$(shell find runtime -name '*.c' | sort))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
LUA_SRC := $(shell find lua -name '*.lua' | sort)
LUA_OBJ := $(LUA_SRC:%.lua=$(BUILD)/obj/%.o)
GEN_OBJ := $(BUILD)/obj/gen/luamods.o

.PHONY: all clean help
all: $(BUILD)/parx $(BUILD)/libparx.a $(BUILD)/libparx.so

# Rebuild everything when the flags change.
$(BUILD)/flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(ALL_CFLAGS) $(LIBS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS) $(LIBS) $(LDFLAGS)' > $@
FORCE:

$(BUILD)/obj/%.o: %.c $(BUILD)/flags $(shell find runtime -name '*.h')
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# lua/parx/x.lua -> module "parx.x" (init.lua -> "parx"), as a bytecode object.
luamod = $(patsubst %.init,%,$(subst /,.,$(patsubst lua/%.lua,%,$(1))))
$(BUILD)/obj/lua/%.o: lua/%.lua
	@mkdir -p $(dir $@)
	@echo "  LUAJIT $<"
	$(Q)$(LUAJIT) -b -n $(call luamod,$<) $< $@

$(BUILD)/gen/luamods.c: $(LUA_SRC) Makefile
	@mkdir -p $(dir $@)
	$(Q){ echo '#include "luamods.h"'; \
	  for f in $(LUA_SRC); do m=$$(echo $$f | sed -e 's|^lua/||' -e 's|\.lua$$||' -e 's|/|.|g' -e 's|\.init$$||'); \
	    s=$$(echo $$m | tr . _); echo "extern const unsigned char luaJIT_BC_$$s[];"; done; \
	  echo 'const px_luamod px_luamods[] = {'; \
	  for f in $(LUA_SRC); do m=$$(echo $$f | sed -e 's|^lua/||' -e 's|\.lua$$||' -e 's|/|.|g' -e 's|\.init$$||'); \
	    s=$$(echo $$m | tr . _); n=$$($(LUAJIT) -b -n $$m $$f - | wc -c); echo "  {\"$$m\", luaJIT_BC_$$s, $$n},"; done; \
	  echo '  {0, 0, 0}};'; } > $@

$(GEN_OBJ): $(BUILD)/gen/luamods.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libparx.a: $(LIB_OBJ) $(LUA_OBJ) $(GEN_OBJ)
	@echo "  AR $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/libparx.so: $(LIB_OBJ) $(LUA_OBJ) $(GEN_OBJ)
	@echo "  LD $@"
	$(Q)$(CC) -shared -o $@ $^ $(LDFLAGS) $(LIBS)

$(BUILD)/parx: $(CLI_OBJ) $(BUILD)/libparx.a
	@echo "  LD $@"
	$(Q)$(CC) -o $@ $(CLI_OBJ) -Wl,--whole-archive $(BUILD)/libparx.a -Wl,--no-whole-archive -Wl,-E $(LDFLAGS) $(LIBS)

clean:
	rm -rf $(BUILD)

help:
	@echo "make            build build/parx, build/libparx.a, build/libparx.so"
	@echo "make clean      remove build/"

# ---- CLI, tests, install, deps (foundation) ---------------------------

# ---- modules: channels, sync, arrays ----------------------------------

# ---- IO ----------------------------------------------------------------

# ---- GPU ----------------------------------------------------------------

# ---- benchmarks ----------------------------------------------------------
