# erofs-nbd - serve a directory tree as an on-demand EROFS image over NBD.
#
#   make                 build $(O)/erofs-nbd (O=build, or build-asan with SANITIZE=1)
#   make deps            install every Debian 12 package needed to build, test, bench
#   make check           unit tests (cmocka) and integration tests (tests/run.sh)
#   make demo            serve the bundled default tree and read it back
#   make bench           compare against mkfs.erofs and nbdkit (bench/run.sh)
#   make fuzz            build the libFuzzer harnesses (tests/fuzz/) and run
#                        each for FUZZ_SECONDS (60) on its corpus
#   make install         PREFIX=/usr/local DESTDIR=
#
# Knobs: SANITIZE=1 (ASan+UBSan), WERROR=1 (CI), V=1 (echo commands),
# QUICK=1 (make check without the slow system checks: VM boots, soak, ...).

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=
CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g

ifeq ($(SANITIZE),1)
O ?= build-asan
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
override LDFLAGS += -fsanitize=address,undefined
else
O ?= build
endif

WARNINGS := -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes \
	-Wstrict-prototypes -Wvla -Wimplicit-fallthrough -Wno-unused-parameter
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif

VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)
PKGS := liburing libxxhash libcap zlib jansson

# pkg-config runs when a recipe needs the flags, never while this file is
# parsed: `make deps demo` installs the packages and then builds in the
# same run, so flags read at parse time would be those of a machine
# without them.  Hence `=` (expanded at use) and not `:=`, for every
# variable that asks pkg-config.
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
override CPPFLAGS += -I. -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
	-DEROFS_NBD_VERSION='"$(VERSION)"'
override CFLAGS += -std=gnu11 $(WARNINGS) -MMD -MP $(PKG_CFLAGS)
LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lpthread

ifneq ($(V),1)
Q := @
endif

# Every .c file of a module folder goes into the library; main.c is the
# program.  New files are picked up without editing this file.
MODULES := overlaywalk erofs fat gpt server
LIB_SRCS := $(filter-out server/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/%.o)
LIB := $(O)/liberofsnbd.a
BIN := $(O)/erofs-nbd

# The launcher is a program of its own; it shares no code with the server
# beyond the small headers in server/ and fat/bootcfg.c, the one rule
# for a tree's kernels and kernel arguments (used by the ESP builder too).
LAUNCH_SRCS := $(wildcard launcher/*.c)
LAUNCH_SHARED := fat/bootcfg.c
LAUNCH_BIN := $(if $(LAUNCH_SRCS),$(O)/erofs-nbd-launch)

UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)
TEST_HELPERS := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))

.PHONY: all check unit deps demo bench install uninstall clean all-aarch64 check-aarch64 check-arm64-os \
	fuzz fuzz-build FORCE
all: $(BIN) $(LAUNCH_BIN)

# With `deps` among the goals, nothing compiles before it has run, even
# with -j: `make -j2 deps check` on a fresh machine must not race apt.
DEPS_FIRST := $(filter deps,$(MAKECMDGOALS))

# The version is compiled into the two main.o: $(O)/version changes when
# `git describe` does (a commit, a tree turning dirty), so they are rebuilt
# then too, not only when main.c changes.
$(O)/version: FORCE
	@mkdir -p $(dir $@)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' >$@
$(O)/server/main.o $(O)/launcher/main.o: $(O)/version
FORCE:

$(O)/%.o: %.c | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BIN): $(O)/server/main.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(O)/erofs-nbd-launch: $(LAUNCH_SRCS:%.c=$(O)/%.o) $(LAUNCH_SHARED:%.c=$(O)/%.o)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(O)/tests/test-%: tests/unit/test-%.c $(TEST_HELPERS) $(LIB) | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LIB) \
		$(LIBS) $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

unit: $(UNIT_BINS)

# The soak client the soak and fault tests run (libnbd, threads).
SOAK_BIN := $(O)/tests/nbd-soak
$(SOAK_BIN): tests/soak/nbd-soak.c | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< \
		$(shell $(PKG_CONFIG) --libs libnbd 2>/dev/null) -lpthread

check: $(BIN) $(LAUNCH_BIN) $(UNIT_BINS) $(SOAK_BIN)
	$(Q)O=$(O) QUICK=$(QUICK) tests/run.sh

# Fuzzing (tests/fuzz/README.md): each tests/fuzz/fuzz-NAME.c is a
# libFuzzer harness with its seed corpus in tests/fuzz/corpus/NAME/; the
# other tests/fuzz/*.c are helpers linked into every harness (as an
# archive: a harness gets only what it uses).  The library (and the
# launcher, without its main) is built again with clang, ASan, UBSan and
# coverage into $(FUZZ_O), apart from build/ and build-asan/.
FUZZ_CC ?= clang-14
FUZZ_O := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
FUZZ_CFLAGS := -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz-*.c)
FUZZ_HELPERS := $(filter-out $(FUZZ_SRCS),$(wildcard tests/fuzz/*.c))
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_O)/tests/fuzz/%)
FUZZ_LIB := $(FUZZ_O)/liberofsnbd.a
FUZZ_LAUNCH_LIB := $(FUZZ_O)/liblaunch.a
FUZZ_HELPER_LIB := $(FUZZ_O)/libfuzzhelp.a

$(FUZZ_O)/%.o: %.c | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZCC  $<")
	$(Q)$(FUZZ_CC) $(CPPFLAGS) $(CFLAGS) $(FUZZ_CFLAGS) -c -o $@ $<

# The harnesses themselves get no coverage instrumentation: coverage
# should steer the fuzzer through the product, and the checkers' loops
# would only slow it down.
$(FUZZ_O)/tests/fuzz/%.o: FUZZ_CFLAGS := -O1 -g $(FUZZ_SAN)

$(FUZZ_LIB): $(LIB_SRCS:%.c=$(FUZZ_O)/%.o)
	$(Q)rm -f $@ && $(AR) rcs $@ $^
$(FUZZ_LAUNCH_LIB): $(filter-out %/main.o,$(LAUNCH_SRCS:%.c=$(FUZZ_O)/%.o))
	$(Q)rm -f $@ && $(AR) rcs $@ $^
$(FUZZ_HELPER_LIB): $(FUZZ_HELPERS:%.c=$(FUZZ_O)/%.o)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(FUZZ_O)/tests/fuzz/fuzz-%: $(FUZZ_O)/tests/fuzz/fuzz-%.o $(FUZZ_HELPER_LIB) \
		$(FUZZ_LAUNCH_LIB) $(FUZZ_LIB)
	@$(if $(Q),echo "  FUZZLD  $@")
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzz-build: $(FUZZ_BINS)
.SECONDARY: $(FUZZ_SRCS:%.c=$(FUZZ_O)/%.o)

# Runs every harness for FUZZ_SECONDS on its committed corpus plus a
# scratch corpus outside the tree; a crash fails with the reproducer.
fuzz: fuzz-build
	$(Q)tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# Debian 12 packages: build (compiler, liburing, libxxhash, libcap, zlib
# for the GPT's CRC32), unit tests (cmocka), integration tests and bench
# (libnbd tools, nbdkit, erofs-utils, fio, qemu, fuse3, attr/acl for
# xattrs, a kernel and busybox for the VM tests, debootstrap for the
# distribution tree, dosfstools/mtools/gdisk/fdisk to check the ESP and
# GPT, ovmf and systemd-boot-efi for the EFI boot, systemd and
# openssh for the unit and --connect tests; jansson to read
# containers-storage's JSON for --image, podman, fuse-overlayfs and
# uidmap to build the image stores its tests serve; the aarch64 cross
# build: its compiler, the :arm64 -dev packages, qemu-user-static for the
# unit tests and the arm64 debootstrap, qemu-system-arm and AAVMF for
# arm64 boots; gnuplot-nox for the bench's plot; groff-base and mandoc to
# check the manuals; clang-14 with its libFuzzer and sanitizer runtimes
# and llvm-14's llvm-symbolizer for make fuzz).
DEB_PACKAGES := build-essential pkg-config git liburing-dev libxxhash-dev \
	libcap-dev libcmocka-dev libnbd-dev libnbd-bin nbdkit erofs-utils fio \
	qemu-utils qemu-system-x86 fuse3 attr acl kmod cpio python3 \
	debootstrap busybox-static linux-image-amd64 util-linux procps time \
	zlib1g-dev dosfstools mtools gdisk fdisk ovmf systemd-boot-efi \
	systemd libcap2-bin openssh-server openssh-client groff-base mandoc \
	libjansson-dev podman fuse-overlayfs uidmap \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binfmt-support \
	qemu-system-arm qemu-efi-aarch64 liburing-dev:arm64 libxxhash-dev:arm64 \
	libcap-dev:arm64 zlib1g-dev:arm64 libcmocka-dev:arm64 libjansson-dev:arm64 \
	gnuplot-nox clang-14 libclang-rt-14-dev llvm-14

deps:
	$(Q)dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
	$(Q)missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
			grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $$missing; \
	else echo "all $(words $(DEB_PACKAGES)) packages present"; fi

# aarch64 (podman machine on Apple silicon runs the server there): a
# cross build with gcc-aarch64-linux-gnu against the :arm64 -dev packages
# in build-aarch64/, then every unit test under qemu-user.  all-aarch64
# is the build alone (tests/test-server-vm-arm64.sh runs it on an arm64
# kernel).
AARCH64_PKG_CONFIG := env PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config
AARCH64_MAKE = $(MAKE) --no-print-directory O=build-aarch64 CC=aarch64-linux-gnu-gcc \
	AR=aarch64-linux-gnu-ar PKG_CONFIG="$(AARCH64_PKG_CONFIG)" SANITIZE=
all-aarch64:
	$(Q)$(AARCH64_MAKE) all
check-aarch64:
	$(Q)$(AARCH64_MAKE) all unit
	$(Q)tests/cross/run-unit.sh build-aarch64 aarch64

# A real arm64 Debian OS tree (built once per machine under emulation,
# ~40 min) booted with AAVMF under TCG, a COMMAND run over SSH.
check-arm64-os: all
	$(Q)O=$(O) tests/os/check-arm64.sh

demo: $(BIN)
	$(Q)tests/demo.sh $(BIN)

# The bench's own tools, next to the binary, where bench/run.sh looks for
# them: the start-up's floor on a tree (bench/walk-floor.c) and CPU time
# to the microsecond (bench/cputime.c).
BENCH_TOOLS := $(O)/bench/walk-floor $(O)/bench/cputime
$(BENCH_TOOLS): $(O)/bench/%: bench/%.c | $(DEPS_FIRST)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TOOL    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $<

bench: $(BIN) $(BENCH_TOOLS)
	$(Q)bench/run.sh $(BIN)

install: all
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/erofs-nbd
	$(if $(LAUNCH_BIN),install -D -m 0755 $(LAUNCH_BIN) $(DESTDIR)$(BINDIR)/erofs-nbd-launch)
	install -D -m 0644 server/erofs-nbd.1 $(DESTDIR)$(MANDIR)/man1/erofs-nbd.1
	$(if $(LAUNCH_BIN),install -D -m 0644 launcher/erofs-nbd-launch.1 $(DESTDIR)$(MANDIR)/man1/erofs-nbd-launch.1)
	install -D -m 0644 systemd/erofs-nbd@.socket $(DESTDIR)$(UNITDIR)/erofs-nbd@.socket
	sed 's|/usr/local/bin/erofs-nbd|$(BINDIR)/erofs-nbd|' systemd/erofs-nbd@.service >$(O)/erofs-nbd@.service
	install -D -m 0644 $(O)/erofs-nbd@.service $(DESTDIR)$(UNITDIR)/erofs-nbd@.service
	install -D -m 0644 systemd/erofs-nbd.env.example $(DESTDIR)$(PREFIX)/share/doc/erofs-nbd/erofs-nbd.env.example

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/erofs-nbd $(DESTDIR)$(BINDIR)/erofs-nbd-launch
	rm -f $(DESTDIR)$(MANDIR)/man1/erofs-nbd.1 $(DESTDIR)$(MANDIR)/man1/erofs-nbd-launch.1
	rm -f $(DESTDIR)$(UNITDIR)/erofs-nbd@.socket $(DESTDIR)$(UNITDIR)/erofs-nbd@.service

clean:
	rm -rf build build-asan build-aarch64 $(FUZZ_O)

-include $(LIB_OBJS:.o=.d) $(O)/server/main.d $(LAUNCH_SRCS:%.c=$(O)/%.d)
-include $(wildcard $(FUZZ_O)/*/*.d $(FUZZ_O)/*/*/*.d)
