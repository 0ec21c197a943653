# erofs-nbd - serve a directory tree as an on-demand EROFS image over NBD.
#
#   make                 build $(O)/erofs-nbd (O=build, or build-asan with SANITIZE=1)
#   make deps            install every Debian 12 package needed to build, test, bench
#   make check           unit tests (cmocka) and integration tests (tests/run.sh)
#   make demo            serve the bundled default tree and read it back
#   make bench           compare against mkfs.erofs and nbdkit (bench/run.sh)
#   make install         PREFIX=/usr/local DESTDIR=
#
# Knobs: SANITIZE=1 (ASan+UBSan), WERROR=1 (CI), V=1 (echo commands).

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
override CPPFLAGS += -I. -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
	-DEROFS_NBD_VERSION='"$(VERSION)"'
override CFLAGS += -std=gnu11 $(WARNINGS) -MMD -MP \
	$(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lpthread

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
# beyond the small headers in server/.
LAUNCH_SRCS := $(wildcard launcher/*.c)
LAUNCH_BIN := $(if $(LAUNCH_SRCS),$(O)/erofs-nbd-launch)

UNIT_SRCS := $(wildcard tests/unit/test-*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(O)/tests/%)
TEST_HELPERS := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))

.PHONY: all check unit deps demo bench install uninstall clean
all: $(BIN) $(LAUNCH_BIN)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJS)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(BIN): $(O)/server/main.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(O)/erofs-nbd-launch: $(LAUNCH_SRCS:%.c=$(O)/%.o)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(O)/tests/test-%: tests/unit/test-%.c $(TEST_HELPERS) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(TEST_HELPERS) $(LIB) \
		$(LIBS) $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

unit: $(UNIT_BINS)

check: $(BIN) $(LAUNCH_BIN) $(UNIT_BINS)
	$(Q)O=$(O) tests/run.sh

# Debian 12 packages: build (compiler, liburing, libxxhash, libcap, zlib
# for the GPT's CRC32), unit tests (cmocka), integration tests and bench
# (libnbd tools, nbdkit, erofs-utils, fio, qemu, fuse3, attr/acl for
# xattrs, a kernel and busybox for the VM tests, debootstrap for the
# distribution tree, dosfstools/mtools/gdisk/fdisk to check the ESP and
# GPT, ovmf and systemd-boot-efi for the EFI boot, systemd and
# openssh for the unit and --connect tests; jansson to read
# containers-storage's JSON for --image, podman, fuse-overlayfs and
# uidmap to build the image stores its tests serve).
DEB_PACKAGES := build-essential pkg-config git liburing-dev libxxhash-dev \
	libcap-dev libcmocka-dev libnbd-dev libnbd-bin nbdkit erofs-utils fio \
	qemu-utils qemu-system-x86 fuse3 attr acl kmod cpio python3 \
	debootstrap busybox-static linux-image-amd64 util-linux procps time \
	zlib1g-dev dosfstools mtools gdisk fdisk ovmf systemd-boot-efi \
	systemd libcap2-bin openssh-server openssh-client \
	libjansson-dev podman fuse-overlayfs uidmap

deps:
	$(Q)missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
			grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends $$missing; \
	else echo "all $(words $(DEB_PACKAGES)) packages present"; fi

demo: $(BIN)
	$(Q)tests/demo.sh $(BIN)

bench: $(BIN)
	$(Q)bench/run.sh $(BIN)

install: all
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/erofs-nbd
	$(if $(LAUNCH_BIN),install -D -m 0755 $(LAUNCH_BIN) $(DESTDIR)$(BINDIR)/erofs-nbd-launch)
	install -D -m 0644 systemd/erofs-nbd@.socket $(DESTDIR)$(UNITDIR)/erofs-nbd@.socket
	sed 's|/usr/local/bin/erofs-nbd|$(BINDIR)/erofs-nbd|' systemd/erofs-nbd@.service >$(O)/erofs-nbd@.service
	install -D -m 0644 $(O)/erofs-nbd@.service $(DESTDIR)$(UNITDIR)/erofs-nbd@.service
	install -D -m 0644 systemd/erofs-nbd.env.example $(DESTDIR)$(PREFIX)/share/doc/erofs-nbd/erofs-nbd.env.example

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/erofs-nbd
	rm -f $(DESTDIR)$(UNITDIR)/erofs-nbd@.socket $(DESTDIR)$(UNITDIR)/erofs-nbd@.service

clean:
	rm -rf build build-asan

-include $(LIB_OBJS:.o=.d) $(O)/server/main.d $(LAUNCH_SRCS:%.c=$(O)/%.d)
