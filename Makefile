# parx -- one GNU Makefile.  `make help` lists the targets.
#
# Sections are owned by area (core, CLI, modules, GPU, bench); keep edits
# inside your section so parallel work does not collide.

Q ?= @
CC ?= cc
BUILD ?= build
PREFIX ?= /usr/local
LUAJIT ?= luajit
LUAJIT_FLAGS := -b -g

# ---- flags ------------------------------------------------------------
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wno-unused-parameter
# libcurl and OpenBLAS are opened on first use (runtime/platform/): only
# their headers are needed at build time.
PKGS := luajit libuv
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) libcurl 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# Symbols are hidden unless parx.h declares them (its visibility pragma);
# libparx.so exports only what runtime/parx.map lists.
ALL_CFLAGS := -std=gnu11 -fPIC -fvisibility=hidden -pthread $(WARN) $(CFLAGS) $(PKG_CFLAGS) \
  -I/usr/include/x86_64-linux-gnu -Iruntime -Iruntime/core $(EXTRA_CFLAGS)
LIBS := $(PKG_LIBS) -lm -ldl -lpthread $(EXTRA_LIBS)
LDFLAGS ?=

# ---- sources ----------------------------------------------------------
CLI_SRC := $(wildcard runtime/cli/*.c)
# runtime/mpi: with OpenMPI's headers all but nompi.c, else nompi.c alone
# (MPI=0 builds without; see the MPI section).
MPI_CFLAGS := $(if $(filter 0,$(MPI)),,$(shell pkg-config --cflags ompi 2>/dev/null))
MPI_SKIP := $(if $(MPI_CFLAGS),runtime/mpi/nompi.c,$(filter-out runtime/mpi/nompi.c,$(wildcard runtime/mpi/*.c)))
LIB_SRC := $(filter-out $(CLI_SRC) $(MPI_SKIP),$(shell find runtime -name '*.c' | sort))
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
	@echo '$(CC) $(ALL_CFLAGS) $(LIBS) $(LDFLAGS) $(LUAJIT_FLAGS)' | cmp -s - $@ || echo '$(CC) $(ALL_CFLAGS) $(LIBS) $(LDFLAGS) $(LUAJIT_FLAGS)' > $@
FORCE:

$(BUILD)/obj/%.o: %.c $(BUILD)/flags $(shell find runtime -name '*.h')
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

# lua/parx/x.lua -> module "parx.x" (init.lua -> "parx"), as a bytecode object.
luamod = $(patsubst %.init,%,$(subst /,.,$(patsubst lua/%.lua,%,$(1))))
$(BUILD)/obj/lua/%.o: lua/%.lua $(BUILD)/flags
	@mkdir -p $(dir $@)
	@echo "  LUAJIT $<"
	$(Q)$(LUAJIT) $(LUAJIT_FLAGS) -n $(call luamod,$<) $< $@

$(BUILD)/gen/luamods.c: $(LUA_SRC) Makefile
	@mkdir -p $(dir $@)
	$(Q){ echo '#include "luamods.h"'; \
	  for f in $(LUA_SRC); do m=$$(echo $$f | sed -e 's|^lua/||' -e 's|\.lua$$||' -e 's|/|.|g' -e 's|\.init$$||'); \
	    s=$$(echo $$m | tr . _); echo "extern const unsigned char luaJIT_BC_$$s[];"; done; \
	  echo 'const px_luamod px_luamods[] = {'; \
	  for f in $(LUA_SRC); do m=$$(echo $$f | sed -e 's|^lua/||' -e 's|\.lua$$||' -e 's|/|.|g' -e 's|\.init$$||'); \
	    s=$$(echo $$m | tr . _); n=$$($(LUAJIT) $(LUAJIT_FLAGS) -n $$m $$f - | wc -c); echo "  {\"$$m\", luaJIT_BC_$$s, $$n},"; done; \
	  echo '  {0, 0, 0}};'; } > $@

$(GEN_OBJ): $(BUILD)/gen/luamods.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libparx.a: $(LIB_OBJ) $(LUA_OBJ) $(GEN_OBJ)
	@echo "  AR $@"
	$(Q)rm -f $@ && ar rcs $@ $^

# libparx.so.$(VERSION) with the SONAME libparx.so.$(SOVERSION) (the number
# changes when parx.h breaks binary compatibility), and the two links
# that the runtime linker (libparx.so.0) and the build linker (-lparx) use.
VERSION := 0.1.0
SOVERSION := 0
$(BUILD)/libparx.so.$(VERSION): $(LIB_OBJ) $(LUA_OBJ) $(GEN_OBJ) runtime/parx.map
	@echo "  LD $@"
	$(Q)$(CC) -shared -o $@ $(LIB_OBJ) $(LUA_OBJ) $(GEN_OBJ) -Wl,--version-script=runtime/parx.map \
	  -Wl,-soname,libparx.so.$(SOVERSION) $(LDFLAGS) $(LIBS)
$(BUILD)/libparx.so: $(BUILD)/libparx.so.$(VERSION)
	$(Q)ln -sf libparx.so.$(VERSION) $(BUILD)/libparx.so.$(SOVERSION)
	$(Q)ln -sf libparx.so.$(VERSION) $@

$(BUILD)/parx: $(CLI_OBJ) $(BUILD)/libparx.a
	@echo "  LD $@"
	$(Q)$(CC) -o $@ $(CLI_OBJ) -Wl,--whole-archive $(BUILD)/libparx.a -Wl,--no-whole-archive -Wl,-E $(LDFLAGS) $(LIBS)

clean:
	rm -rf $(BUILD)

help::
	@echo "make            build build/parx, build/libparx.a, build/libparx.so"
	@echo "make clean      remove build/"

# ---- CLI, tests, install, deps (foundation) ---------------------------
#
# `make deps` installs the Debian packages parx needs with apt-get, only
# when one is missing (as root, else through sudo).  `make`, `make test`
# and `make demo` run it first on a fresh tree: the check leaves
# $(BUILD)/deps.mk behind, and because that file is included, make re-reads
# this Makefile after installing, so pkg-config sees the new packages.
DEB_PKGS := luajit libluajit-5.1-dev libuv1-dev lua-busted libopenblas-dev \
  libcurl4-openssl-dev libedit-dev libopenmpi-dev openmpi-bin pkg-config \
  python3 clang libclang-rt-14-dev netcat-openbsd gcc make procps librsvg2-bin libglib2.0-dev \
  valgrind
BENCH_PKGS := golang-go hyperfine python3-uvloop lua-luv nodejs python3-mpi4py

BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man
# Where LuaJIT looks for C modules (package.cpath): `require "parx"` from
# luajit finds the library there as parx.so (luaopen_parx).
LUA_CMODDIR ?= $(LIBDIR)/lua/5.1
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
# Directories the runtime linker searches by itself (Debian's defaults and
# ld.so.conf.d/libc.conf).  A library installed elsewhere is found through
# the rpath that parx.pc then adds to Libs.
SYSTEM_LIBDIRS := /lib /usr/lib /lib/$(MULTIARCH) /usr/lib/$(MULTIARCH) /usr/local/lib
PC_RPATH := $(if $(filter $(LIBDIR),$(SYSTEM_LIBDIRS)),,-Wl,-rpath,$${libdir})
SPECS ?= spec
SPEC_TIMEOUT ?= 180

.PHONY: deps bench-deps test demo install uninstall asan tsan embed-host embed-poll-host embed-glib-host

# apt_install(packages): install the ones dpkg does not know as installed.
define apt_install
	@missing=; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "deps: missing$$missing, and no apt-get here: install them by hand" >&2; exit 1; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	echo "  DEPS apt-get install$$missing"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing
endef

deps:
	$(call apt_install,$(DEB_PKGS))

bench-deps:
	$(call apt_install,$(BENCH_PKGS))

ifeq ($(filter deps bench-deps clean help,$(MAKECMDGOALS)),)
-include $(BUILD)/deps.mk
endif
$(BUILD)/deps.mk:
	$(call apt_install,$(DEB_PKGS))
	@mkdir -p $(BUILD) && echo '# written once `make deps` found every package' > $@

# The embedding example, linked against the static library.
$(BUILD)/embed-host: scripts/embed/host.c $(BUILD)/libparx.a runtime/parx.h
	@echo "  LD $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libparx.a -Wl,-E $(LDFLAGS) $(LIBS)
embed-host: $(BUILD)/embed-host

# The hosts with their own event loops: poll() always, GLib when
# pkg-config finds it (libglib2.0-dev, in DEB_PKGS).
EMBED_HOSTS := $(BUILD)/embed-host $(BUILD)/embed-poll-host
GLIB_FLAGS := $(shell pkg-config --cflags --libs glib-2.0 2>/dev/null)
ifneq ($(GLIB_FLAGS),)
EMBED_HOSTS += $(BUILD)/embed-glib-host
endif
$(BUILD)/embed-poll-host: scripts/embed/poll_host.c scripts/embed/lines.h $(BUILD)/libparx.a runtime/parx.h
	@echo "  LD $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libparx.a -Wl,-E $(LDFLAGS) $(LIBS)
$(BUILD)/embed-glib-host: scripts/embed/glib_host.c scripts/embed/lines.h $(BUILD)/libparx.a runtime/parx.h
	@echo "  LD $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libparx.a -Wl,-E $(LDFLAGS) $(LIBS) $(GLIB_FLAGS)
embed-poll-host: $(BUILD)/embed-poll-host
embed-glib-host: $(BUILD)/embed-glib-host

# Every spec file runs under build/parx in its own process; the runner ends
# with "N passed, N failed[, N skipped]".  Specs find the build through
# PARX_BIN / PARX_BUILD, and the sanitizer variants through PARX_CC and
# PARX_LDFLAGS (to link the embedding host the same way).
test: all $(EMBED_HOSTS)
	$(Q)PARX_BIN=$(abspath $(BUILD)/parx) PARX_BUILD=$(abspath $(BUILD)) \
	  PARX_CC='$(CC)' PARX_LDFLAGS='$(LDFLAGS)' SPEC_TIMEOUT=$(SPEC_TIMEOUT) \
	  scripts/tools/runspecs $(BUILD)/parx $(SPECS)

demo: all
	$(Q)$(BUILD)/parx scripts/examples/tour.lua

define PARX_PC
prefix=$(PREFIX)
libdir=$(LIBDIR)
includedir=$(INCLUDEDIR)

Name: parx
Description: parallel runtime for Lua (LuaJIT, libuv)
Version: $(VERSION)
Requires: luajit
Requires.private: libuv
Cflags: -I$${includedir}
Libs: -L$${libdir} -lparx $(PC_RPATH)
Libs.private: -lm -ldl -lpthread
endef
export PARX_PC

# `make install` (PREFIX, DESTDIR, LIBDIR ...): the binary, the library and
# its links, the header, parx.pc, the man page, and parx.so for LuaJIT.
# Installed for real (no DESTDIR) into a directory the runtime linker
# searches, as root, it runs ldconfig; anywhere else parx.pc carries an
# rpath.  Either way it says which.
install: all
	@echo "  INSTALL $(DESTDIR)$(PREFIX)"
	$(Q)install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(LUA_CMODDIR)
	$(Q)install -m 755 $(BUILD)/parx $(DESTDIR)$(BINDIR)/parx
	$(Q)install -m 644 $(BUILD)/libparx.a $(DESTDIR)$(LIBDIR)/libparx.a
	$(Q)install -m 755 $(BUILD)/libparx.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libparx.so.$(VERSION)
	$(Q)ln -sf libparx.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libparx.so.$(SOVERSION)
	$(Q)ln -sf libparx.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libparx.so
	$(Q)ln -sf $(LIBDIR)/libparx.so.$(SOVERSION) $(DESTDIR)$(LUA_CMODDIR)/parx.so
	$(Q)install -m 644 runtime/parx.h $(DESTDIR)$(INCLUDEDIR)/parx.h
	$(Q)install -m 644 docs/parx.1 $(DESTDIR)$(MANDIR)/man1/parx.1
	$(Q)printf '%s\n' "$$PARX_PC" > $(DESTDIR)$(PKGCONFIGDIR)/parx.pc
	$(Q)if [ -n "$(PC_RPATH)" ]; then \
	  echo "  NOTE $(LIBDIR) is not searched by the runtime linker: parx.pc links with -Wl,-rpath,$(LIBDIR)" \
	    "(or add it to /etc/ld.so.conf.d/ and run ldconfig)"; \
	elif [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then \
	  echo "  LDCONFIG $(LIBDIR)"; ldconfig; \
	elif [ -z "$(DESTDIR)" ]; then \
	  echo "  NOTE run ldconfig as root so that programs find libparx.so.$(SOVERSION) in $(LIBDIR)"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/parx $(DESTDIR)$(LIBDIR)/libparx.a \
	  $(DESTDIR)$(LIBDIR)/libparx.so $(DESTDIR)$(LIBDIR)/libparx.so.$(SOVERSION) \
	  $(DESTDIR)$(LIBDIR)/libparx.so.$(VERSION) $(DESTDIR)$(LUA_CMODDIR)/parx.so \
	  $(DESTDIR)$(INCLUDEDIR)/parx.h $(DESTDIR)$(MANDIR)/man1/parx.1 \
	  $(DESTDIR)$(PKGCONFIGDIR)/parx.pc

# `make deb`: build/parx_$(VERSION)_<arch>.deb with dpkg-deb, from an
# install into a staging directory with Debian's paths (/usr, the
# multiarch library directory, LuaJIT's C module directory).
DEB_ARCH := $(shell dpkg --print-architecture 2>/dev/null)
DEB_ROOT := $(BUILD)/deb
define DEB_CONTROL
Package: parx
Version: $(VERSION)
Architecture: $(DEB_ARCH)
Maintainer: parx developers <parx@localhost>
Depends: libluajit-5.1-2, libuv1, libedit2, libc6
Recommends: libcurl4, libopenblas0
Section: interpreters
Priority: optional
Description: parallel runtime for Lua (LuaJIT, libuv)
 parx runs Lua code on worker threads, each with its own LuaJIT VM and
 libuv loop: the parx command (a luajit-compatible interpreter and REPL),
 libparx.so with parx.h for embedding, and the parx module for LuaJIT.
endef
export DEB_CONTROL
.PHONY: deb
deb: all
	$(Q)rm -rf $(DEB_ROOT)
	$(Q)$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr \
	  LIBDIR=/usr/lib/$(MULTIARCH) PKGCONFIGDIR=/usr/lib/$(MULTIARCH)/pkgconfig \
	  LUA_CMODDIR=/usr/lib/$(MULTIARCH)/lua/5.1
	$(Q)gzip -9n $(DEB_ROOT)/usr/share/man/man1/parx.1
	$(Q)mkdir -p $(DEB_ROOT)/DEBIAN
	$(Q)printf '%s\n' "$$DEB_CONTROL" > $(DEB_ROOT)/DEBIAN/control
	$(Q)printf 'activate-noawait ldconfig\n' > $(DEB_ROOT)/DEBIAN/triggers
	$(Q)dpkg-deb --root-owner-group --build $(DEB_ROOT) $(BUILD)/parx_$(VERSION)_$(DEB_ARCH).deb

# Sanitizer builds live in their own trees and run the same specs
# (SPECS=... to pick some).  Every process a spec starts writes its reports
# under build-asan/san-logs or build-tsan/san-logs (the sanitizers'
# log_path, inherited by children), and runspecs fails the spec file that
# left one, so a leak or a race in a child parx counts as much as one in
# the busted process.  scripts/tools/lsan.supp (PMIx's thread) and tsan.supp (libuv's and
# OpenMPI's lines) say why, line by line: a line there may only match a report
# that is a library's own, never one with LuaJIT (or libcurl) merely below
# a parx frame.  LuaJIT itself is not instrumented.  Specs see
# PARX_SANITIZER=address|thread and may skip what a sanitizer cannot do
# (TSan holds signal handlers back while uninstrumented LuaJIT code runs, so
# Ctrl-C cannot interrupt a loop).  allocator_may_return_null=1: a request
# larger than the sanitizer's allocator allows (errors_spec asks for 4 TiB)
# returns NULL, as glibc's malloc does, instead of aborting; the specs check
# parx's answer to that NULL.
SAN_CC := $(shell command -v clang >/dev/null 2>&1 && echo clang || echo $(CC))
SAN_LOG = log_path=$(abspath build-$(1)/san-logs)/report:log_exe_name=1
asan:
	$(Q)ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:$(call SAN_LOG,asan)" \
	  UBSAN_OPTIONS="print_stacktrace=1:$(call SAN_LOG,asan)" \
	  LSAN_OPTIONS="suppressions=$(abspath scripts/tools/lsan.supp):print_suppressions=0" \
	  PARX_SANITIZER=address PARX_SANITIZER_LOGS=$(abspath build-asan/san-logs) \
	  $(MAKE) --no-print-directory BUILD=build-asan CC=$(SAN_CC) \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined" \
	  LDFLAGS="-fsanitize=address,undefined" SPEC_TIMEOUT=600 test
tsan:
	$(Q)TSAN_OPTIONS="suppressions=$(abspath scripts/tools/tsan.supp):second_deadlock_stack=1:allocator_may_return_null=1:$(call SAN_LOG,tsan)" \
	  PARX_SANITIZER=thread PARX_SANITIZER_LOGS=$(abspath build-tsan/san-logs) \
	  $(MAKE) --no-print-directory BUILD=build-tsan CC=$(SAN_CC) \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=thread" \
	  LDFLAGS="-fsanitize=thread" SPEC_TIMEOUT=600 test

help::
	@echo "make deps       install the Debian packages parx needs (apt-get, only if missing)"
	@echo "make bench-deps install what the benchmarks compare against (Go, hyperfine)"
	@echo "make test       build and run every spec under build/parx (SPECS=spec/x_spec.lua)"
	@echo "make demo       build and run scripts/examples/tour.lua"
	@echo "make install    install parx, libparx, parx.h, parx.pc, the man page, parx.so for LuaJIT (PREFIX, DESTDIR)"
	@echo "make deb        build build/parx_VERSION_ARCH.deb (dpkg-deb)"
	@echo "make asan       build in build-asan/ with AddressSanitizer+UBSan and run the specs"
	@echo "make tsan       build in build-tsan/ with ThreadSanitizer and run the specs"

# ---- modules: channels, sync, arrays ----------------------------------

# Channels, select and sync.  `make tsan-chan` is `make tsan` on their specs
# (the ones that exercise cross-thread hand-offs); `make bench-chan` runs
# scripts/bench/chan.sh (parx vs Go channels, queue.Queue, mp.Queue).
CHAN_SPECS := spec/chan_spec.lua spec/select_spec.lua spec/sync_spec.lua
.PHONY: test-chan tsan-chan bench-chan
test-chan:
	$(Q)$(MAKE) --no-print-directory test SPECS="$(CHAN_SPECS)"
tsan-chan:
	$(Q)$(MAKE) --no-print-directory tsan SPECS="$(CHAN_SPECS)"
bench-chan: all
	$(Q)scripts/bench/chan.sh $(BUILD)

help::
	@echo "make test-chan  run the channel, select and sync specs"
	@echo "make tsan-chan  the same specs under ThreadSanitizer"
	@echo "make bench-chan channels vs Go channels and Python queues"

# ---- IO ----------------------------------------------------------------

# 100,000 timers of 0..10 ms: parx vs Node.js and Python asyncio.
.PHONY: bench-io-timers
bench-io-timers: all
	$(Q)scripts/bench/timers.sh $(BUILD)
help::
	@echo "make bench-io-timers  100,000 timers: parx vs Node.js and asyncio"

# TCP echo round trips (50 connections) and 200 concurrent HTTP GETs:
# parx vs Node.js, Python asyncio/uvloop, LuaJIT+luv and Go on 127.0.0.1.
.PHONY: bench-io-tcp bench-io-http bench-io-net
bench-io-tcp: all
	$(Q)scripts/bench/net.sh $(BUILD) echo
bench-io-http: all
	$(Q)scripts/bench/net.sh $(BUILD) http
bench-io-net: all
	$(Q)scripts/bench/net.sh $(BUILD) all
help::
	@echo "make bench-io-tcp     TCP echo, 50 connections: parx vs Node, asyncio, uvloop, luv, Go"
	@echo "make bench-io-http    200 concurrent HTTP GETs: parx vs asyncio+urllib and Node fetch"

# ---- GPU ----------------------------------------------------------------
#
# build/parx_cuda.so: kernels/*.cu plus the cuBLAS glue, built by nvcc when
# the CUDA Toolkit is found (nvcc on PATH, else /usr/local/cuda/bin/nvcc;
# NVCC=... to choose, NVCC= to skip).  The parx binary never links CUDA: it
# dlopens the module at run time (runtime/gpu/loader.c).  Machine code for
# sm_90 (H100/H200) plus PTX for compute_75, which the driver compiles for
# any newer GPU.  cudart is linked statically; cuBLAS is found through the
# toolkit's lib64 (rpath) or the loader's path.
NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_75,code=compute_75
NVCC_FLAGS ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra,-fvisibility=hidden
KERNEL_SRC := $(sort $(wildcard kernels/*.cu))
KERNEL_OBJ := $(KERNEL_SRC:%.cu=$(BUILD)/obj/%.o)
KERNEL_DEPS := $(wildcard kernels/*.h kernels/*.cuh) runtime/gpu/pxcuda.h runtime/gpu/numeric.h
GPU_SELFTEST_OBJ := $(BUILD)/obj/kernels/selftest.o $(BUILD)/obj/runtime/gpu/cpu_ops.o \
  $(BUILD)/obj/runtime/gpu/cpu_blas.o $(BUILD)/obj/runtime/platform/blas.o \
  $(BUILD)/obj/runtime/platform/dl.o

.PHONY: gpu gpu-check gpu-selftest bench-gpu install-gpu
ifneq ($(NVCC),)
all: $(BUILD)/parx_cuda.so
gpu: $(BUILD)/parx_cuda.so $(BUILD)/parx_cuda_selftest $(BUILD)/gpu_cublas_bench
install: install-gpu
else
gpu:
	@echo "gpu: no nvcc found (PATH or /usr/local/cuda/bin): the CPU path only"
endif

$(BUILD)/obj/kernels/%.o: kernels/%.cu $(KERNEL_DEPS)
	@mkdir -p $(dir $@)
	@echo "  NVCC $<"
	$(Q)$(NVCC) $(NVCC_FLAGS) -c $< -o $@

$(BUILD)/parx_cuda.so: $(KERNEL_OBJ)
	@echo "  LD $@"
	$(Q)$(NVCC) -shared $(CUDA_ARCH) -o $@ $^ -lcublas -Xlinker -rpath,$(CUDA_HOME)/lib64

# Checks every kernel against its C equivalent and the cuBLAS products
# against OpenBLAS, through the same dlopen path as parx (no Lua needed).
$(BUILD)/obj/kernels/selftest.o: kernels/selftest.c $(KERNEL_DEPS) $(BUILD)/flags
	@mkdir -p $(dir $@)
	@echo "  CC $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c $< -o $@
$(BUILD)/parx_cuda_selftest: $(GPU_SELFTEST_OBJ)
	@echo "  LD $@"
	$(Q)$(CC) -o $@ $^ -lopenblas -ldl -lm -lpthread

# Direct cuBLAS, for the ratio in the benchmark table.
$(BUILD)/gpu_cublas_bench: scripts/bench/gpu_cublas.c
	@echo "  CC $<"
	$(Q)$(CC) -O2 -Wall -Wextra -I$(CUDA_HOME)/include -o $@ $< -L$(CUDA_HOME)/lib64 \
	  -lcublas -lcudart -Wl,-rpath,$(CUDA_HOME)/lib64

gpu-selftest: $(BUILD)/parx_cuda_selftest $(BUILD)/parx_cuda.so
	$(Q)$(BUILD)/parx_cuda_selftest $(BUILD)/parx_cuda.so

# On a GPU machine: build, the module self-test, the GPU specs, the table.
gpu-check: all gpu
	$(Q)$(BUILD)/parx_cuda_selftest $(BUILD)/parx_cuda.so
	$(Q)PARX_GPU=require $(MAKE) --no-print-directory SPECS=spec/gpu_spec.lua test
	$(Q)scripts/bench/gpu_bench.sh $(BUILD)

# gpu.matmul vs OpenBLAS on the CPU path (PARX_GPU=off), and on a GPU the
# table against direct cuBLAS.
bench-gpu: all
	$(Q)scripts/bench/gpu_bench.sh $(BUILD)

install-gpu: $(BUILD)/parx_cuda.so
	$(Q)install -d $(DESTDIR)$(LIBDIR)/parx
	$(Q)install -m 755 $(BUILD)/parx_cuda.so $(DESTDIR)$(LIBDIR)/parx/parx_cuda.so

help::
	@echo "make gpu        build build/parx_cuda.so, its self-test and the cuBLAS bench (needs nvcc)"
	@echo "make gpu-check  on a GPU machine: self-test, GPU specs, benchmark table"
	@echo "make bench-gpu  gpu.matmul vs OpenBLAS (and cuBLAS when a GPU is there)"

# ---- benchmarks ----------------------------------------------------------

# Each area's driver (scripts/bench/pool.sh, chan.sh, ...: make bench-chan
# and friends) prints its own longer table.
# `make bench`: every table of README's "Benchmarks" in one run, parx and
# its peers interleaved (scripts/bench/all.sh; ROUNDS=3 take about ten
# minutes on 2 cores), written as Markdown to build/bench/results.md.
# BENCH="pool chan" runs some groups only (pool chan marshal array timers
# net startup matmul mpi).  `make bench-readme` puts results.md into README
# between its bench:begin and bench:end markers.
.PHONY: bench bench-readme
bench: all
	$(Q)BENCH="$(BENCH)" ROUNDS="$(ROUNDS)" scripts/bench/all.sh $(BUILD)
bench-readme:
	$(Q)test -s $(BUILD)/bench/results.md || { echo "run make bench first" >&2; exit 1; }
	$(Q)awk -v f=$(BUILD)/bench/results.md '/<!-- bench:begin -->/ {print; while ((getline l < f) > 0) print l; skip = 1; next} \
	  /<!-- bench:end -->/ {skip = 0} !skip' README.md > README.md.new && mv README.md.new README.md

# `make bench-versus OLD=/path/to/old/build`: this build against an earlier
# one, every parx workload of the tables, interleaved (scripts/bench/versus.sh).
.PHONY: bench-versus bench-trace
bench-versus: all
	$(Q)scripts/bench/versus.sh $(or $(OLD),$(error OLD=old-build-dir is required)) $(BUILD)
# What recording costs: the recorder compiled out (build-norec), the
# normal build, and the normal build tracing (scripts/bench/trace.sh).
bench-trace: all
	$(Q)$(MAKE) --no-print-directory BUILD=build-norec EXTRA_CFLAGS=-DPX_NO_RECORDER all
	$(Q)scripts/bench/trace.sh $(BUILD) build-norec

help::
	@echo "make bench-trace  the recorder's and --trace's cost against a build without the recorder"
	@echo "make bench      every benchmark table, parx and peers interleaved (BENCH=\"pool chan\" for some)"
	@echo "make bench-readme  copy build/bench/results.md into README"
	@echo "make bench-versus OLD=dir  this build against an earlier build, as speed ratios"

# Tasks and the pool against multiprocessing, threading, pthreads, Go, OpenMP.
.PHONY: bench-pool bench-marshal
bench-pool: all
	$(Q)scripts/bench/pool.sh $(BUILD)
bench-marshal: all
	$(Q)scripts/bench/marshal.sh $(BUILD)

# parx.array: JIT loop over a.data vs the same loop in C at -O2.
.PHONY: bench-array
bench-array: all
	$(Q)scripts/bench/array.sh $(BUILD)

# ---- fuzz ------------------------------------------------------------------
#
# `make fuzz`: the unmarshaller under libFuzzer with ASan and UBSan
# (fuzz/fuzz_unmarshal.c; clang and libclang-rt-14-dev from `make deps`),
# FUZZ_TIME seconds (default 60), both modes (the first input byte picks
# one).  It starts from seeds that fuzz/seeds.lua writes with the real
# marshaller into $(BUILD)/fuzz/seeds, keeps what it learns in
# $(BUILD)/fuzz/corpus and any crashing input in $(BUILD)/fuzz/artifacts
# (all under build/, never committed); fuzz/regress holds the few inputs
# that once failed (each named after its bug).  FUZZ_ARGS adds libFuzzer options
# (e.g. FUZZ_ARGS=-jobs=2).  spec/fuzz_spec.lua runs it for a minute as part
# of `make test`.  Only the marshaller's files are linked (every
# runtime/core/marshal*.c but marshal_load.c, and the encoders they use): the fuzzer's
# lua_State is not a parx VM, and fuzz/load_stub.c stands in for the
# bytecode loader (runtime/core/marshal_load.c).
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
FUZZ_OUT := $(BUILD)/fuzz
FUZZ_SRC := $(filter-out runtime/core/marshal_load.c,$(wildcard runtime/core/marshal*.c)) \
  runtime/core/unmarshal.c runtime/core/scalar.c runtime/core/numbers.c \
  runtime/core/shared.c runtime/core/errors.c runtime/core/paths.c fuzz/stubs.c fuzz/load_stub.c fuzz/fuzz_unmarshal.c
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -pthread \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  $(WARN) $(PKG_CFLAGS) -Iruntime -Iruntime/core

.PHONY: fuzz fuzz-build
$(FUZZ_OUT)/unmarshal_fuzzer: $(FUZZ_SRC) $(wildcard runtime/core/*.h) Makefile
	@mkdir -p $(dir $@)
	@echo "  FUZZCC $@"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SRC) $(PKG_LIBS) -lm -ldl

$(FUZZ_OUT)/seeds/.done: fuzz/seeds.lua $(BUILD)/parx
	$(Q)rm -rf $(FUZZ_OUT)/seeds && mkdir -p $(FUZZ_OUT)/seeds
	$(Q)$(BUILD)/parx fuzz/seeds.lua $(FUZZ_OUT)/seeds >/dev/null
	$(Q)touch $@

fuzz-build: $(FUZZ_OUT)/unmarshal_fuzzer $(FUZZ_OUT)/seeds/.done

fuzz: fuzz-build
	$(Q)mkdir -p $(FUZZ_OUT)/corpus $(FUZZ_OUT)/artifacts
	$(Q)UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(FUZZ_OUT)/unmarshal_fuzzer -max_total_time=$(FUZZ_TIME) -max_len=65536 \
	  -rss_limit_mb=2048 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_OUT)/artifacts/ $(FUZZ_ARGS) \
	  $(FUZZ_OUT)/corpus $(FUZZ_OUT)/seeds fuzz/regress

help::
	@echo "make fuzz       libFuzzer+ASan+UBSan on the unmarshaller, both modes (FUZZ_TIME=60 s)"

# ---- MPI ---------------------------------------------------------------------
#
# parx.mpi (runtime/mpi/) is built when OpenMPI's pkg-config file is found
# (`make deps` installs libopenmpi-dev); MPI=0 builds the stub that says how
# to get it.  libmpi is not linked: runtime/mpi/libmpi.c opens it on first
# use, so only its headers are needed here.  `make test` runs
# spec/mpi_spec.lua, which starts its jobs with mpiexec itself (and on the
# simulated cluster of scripts/tools/netns-cluster when it can).
$(BUILD)/obj/runtime/mpi/%.o: ALL_CFLAGS += $(MPI_CFLAGS)

.PHONY: test-mpi bench-mpi
test-mpi:
	$(Q)$(MAKE) --no-print-directory test SPECS=spec/mpi_spec.lua

# parx.mpi vs C MPI_Send/MPI_Recv and mpi4py's MPIPoolExecutor (also part
# of `make bench`, as scripts/bench/mpi.sh).
bench-mpi: all
	$(Q)scripts/bench/mpi.sh $(BUILD)

help::
	@echo "make test-mpi   the MPI specs (mpiexec -n 3, and the simulated cluster as root)"
	@echo "make bench-mpi  parx.mpi vs C MPI and mpi4py (ping-pong, mpi.map, weak scaling)"
