# zroam — top-level targets. `make check` runs every test; `make demo` shows zroam on a
# real pool. Both install what they need (apt packages) and cache heavy artifacts (guest
# kernel modules, builder ramdisk, pool images) in $(ZROAM_LAB_CACHE).

SHELL := /bin/bash
TARGET := x86_64-unknown-linux-gnu
BIN := target/$(TARGET)/release/zroam
export ZROAM_LAB_CACHE ?= /var/cache/zroam-lab
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := nvlist label gpt espset keys modalias image
FUZZ_ENV := RUSTC_BOOTSTRAP=1

PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: install uninstall deb all build man setup toolchain lint check unit binary fuzz-regress lab-probe lab-boot lab-boot21 lab-image lab-be lab-gen lab-esp lab-debian lab-gen-debian demo demo-probe bench bench-probe fuzz fixtures clean

all: build

build:
	cargo build --release --locked
	cargo build --release --locked --example forge_label

# The man pages, from their scdoc sources (tests/check-docs.py keeps them in step with the
# code and the README).
MAN := target/man/zroam.8 target/man/zroam-boot.7
man: $(MAN)
target/man/%: docs/man/%.scd
	@mkdir -p target/man
	@command -v scdoc >/dev/null || { echo "make: scdoc makes the man pages: apt install scdoc" >&2; exit 1; }
	scdoc <$< >$@

# Host packages for the VM lab (QEMU, OpenZFS DKMS for the guest kernel, image tools).
setup:
	bash tests/lab/host-setup.sh

# cargo-fuzz, built from crates.io (the stable toolchain runs it with RUSTC_BOOTSTRAP); only
# `make fuzz` needs it: `make check` replays the corpora with `cargo test`.
toolchain:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

check: build setup lint unit binary lab-probe lab-boot lab-boot21 lab-image lab-be lab-esp lab-gen-debian

# Formatting, clippy (warnings are errors) and shellcheck over every shell file of the
# generators and the lab. Each file names its dialect (shebang or `# shellcheck shell=`)
# and the files it sources (`# shellcheck source=`, relative to the file: -P SCRIPTDIR),
# which -x follows.
SHELL_FILES := dracut/90zroam/*.sh initramfs-tools/hooks/zroam initramfs-tools/scripts/zroam \
  initramfs-tools/scripts/init-top/preload-zroam \
  initramfs-tools/conf.d/zroam initramfs-tools/share/zroam-install.sh \
  mkinitcpio/install/zroam mkinitcpio/hooks/zroam tests/lab/*.sh tests/mkinitcpio/* \
  initramfs-tools/post-update.d/zroam-esp mkinitcpio/post/zroam-esp \
  initramfs-tools/share/kernel-install/96-zroam-esp.install initramfs-tools/share/key.d/* \
  tests/check-binary.sh tests/fixtures/capture.sh agent/debian/build-deb.sh agent/debian/postrm agent/debian/prerm .ci/run

lint:
	cargo fmt --all --check
	cargo clippy --all-targets --locked -- -D warnings
	shellcheck -x -P SCRIPTDIR $(SHELL_FILES)
	python3 tests/check-docs.py

# Every cargo test, the fuzz corpus replay (fuzz-regress) among them.
unit:
	cargo test --locked

binary: build
	bash tests/check-binary.sh $(BIN)
	python3 tests/agent_protocol.py $(BIN)

# Replay every committed fuzz input (and crash artifacts `make fuzz` left) through the fuzz
# targets' own functions (zroam::fuzzing), with a bound on each input's heap: a crash that
# was fixed stays fixed. A plain `cargo test` (`make unit`) runs it too, from the same build.
fuzz-regress:
	cargo test --locked --test fuzz_corpus

# Real pools (made by zpool in the builder VM) on loop devices; zroam probe vs zdb -l.
lab-probe: build setup
	python3 tests/lab/probe_loop.py $(BIN)

# Real boots under QEMU: zroam as the ramdisk's /init (the ramdisk `zroam image` builds),
# every scenario of tests/lab/boot_lab.py.
lab-boot: build setup
	python3 tests/lab/boot_lab.py $(BIN) $(SCENARIOS)

# The boot lab's core scenarios on the second OpenZFS row: pools made by Debian 12's own
# OpenZFS 2.1.11, booted by its kernel 6.1 with 2.1's zpool/zfs in zroam's ramdisk
# (tests/lab/zfs21.sh builds that row once: about 10 minutes of compiling).
lab-boot21: build setup
	LAB_ROW=zfs21 python3 tests/lab/boot_lab.py $(BIN) $(SCENARIOS)

# `zroam image` as users run it (tests/lab/image_lab.py): the same bytes twice, and its EFI
# image on a stick's ESP booted by OVMF with no boot entry beside a machine's own rpool on
# SATA, NVMe and virtio. (lab-boot boots its ramdisk in every scenario.)
lab-image: build setup
	python3 tests/lab/image_lab.py $(BIN) $(IMAGE_SCENARIOS)

# Boot environments and pool guards: snapshots, rollbacks, the menu, the other tools'
# spellings, hibernation, checkpoints, zroam be (tests/lab/be_lab.py; LAB_JOBS at a time).
lab-be: build setup
	python3 tests/lab/be_lab.py $(BIN) $(BE_SCENARIOS)

# The same boots with ramdisks made by dracut (systemd and shell initramfs) and mkinitramfs
# from a `make install DESTDIR=…` staging, alone and beside OpenZFS's own modules, plus the
# images the real mkinitcpio v41 makes (tests/lab/gen_lab.py).
lab-gen: build setup
	python3 tests/lab/gen_lab.py $(BIN) $(GEN_CASES)

# OVMF + systemd-boot boot one ESP; zroam mirrors it to the others (tests/lab/esp_lab.py).
lab-esp: build setup
	python3 tests/lab/esp_lab.py $(BIN) $(ESP_SCENARIOS)

# A Debian 12 system on a ZFS mirror (Debian's OpenZFS 2.1.11 and kernel 6.1, an ESP per
# disk, systemd-boot) with zroam's .deb installed by dpkg, booted by OVMF to multi-user,
# moved to USB, through a kernel update (tests/lab/debian_lab.py).
lab-debian: setup deb
	python3 tests/lab/debian_lab.py target/debian/zroam_$(VERSION)_*.deb $(DEBIAN_SCENARIOS)

# The generator lab and the Debian lab side by side, each one's output whole when it ends
# (-O). The Debian lab spends much of its time off its guests (debootstrap, tar, the
# kernel update's packages), time the generator lab's guests fill; the host's cores are
# lock files (tests/lab/slots.sh) that every guest and compile holds one of per vCPU or
# job, so together they never run more than the host has.
lab-gen-debian: build setup
	$(MAKE) --no-print-directory -O -j2 lab-gen lab-debian LAB_DEBIAN_SMP=1

# Boots a mirror's second disk alone, over USB: zroam's log, the report, the BE's marker.
demo: build setup
	python3 tests/lab/boot_lab.py $(BIN) --demo 2-usb-degraded

# zroam probe next to zdb -l on a real degraded mirror.
demo-probe: build setup
	bash tests/lab/demo.sh $(BIN)

# Benchmarks (not part of check). The boot benchmark: the stock OpenZFS initramfs-tools and
# dracut paths and archzfs's mkinitcpio hook against zroam's, BENCH_RUNS boots each (default
# 5), one guest at a time; prints the table and the targets, writes target/bench/bench.json
# and each zroam path's in-place timeline (zroam status --svg) with an index into docs/bench/
# (tests/lab/bench.py). Then the probe benchmark (bench-probe, below), whatever the first
# found; either one missing a target fails the run.
bench: build setup
	rc=0; python3 tests/lab/bench.py $(BIN) $(BENCH_ARGS) || rc=1; \
	  python3 tests/lab/probe_bench.py $(BIN) $(PROBE_BENCH_ARGS) || rc=1; exit $$rc

# The probe benchmark, on the host: `zroam probe` against `blkid -p` on the same 32 read-only
# loop devices (the ZFS partitions of the cached pool images), page cache dropped before each
# run, 15 interleaved rounds; prints median CPU (user+sys) and wall time and their ratios
# against the targets, writes target/bench/probe.json (tests/lab/probe_bench.py;
# PROBE_BENCH_ARGS e.g. --runs 5).
bench-probe: build
	python3 tests/lab/probe_bench.py $(BIN) $(PROBE_BENCH_ARGS)

# Long fuzzing runs (not part of check): FUZZ_SECONDS per target.
fuzz: toolchain
	cd agent/fuzz && for t in $(FUZZ_TARGETS); do mkdir -p corpus/$$t; \
	  $(FUZZ_ENV) cargo fuzz run $$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=1024 -max_len=300000 || exit 1; done

# Regenerate the committed label fixtures from fresh pools (builder VM).
fixtures: setup
	bash tests/fixtures/capture.sh

clean:
	cargo clean

# The binary, each generator's module where that generator looks for it, and the install
# helper the three modules share (they find it from their own paths: PREFIX/lib/zroam),
# with `zroam image`'s program beside it (zroam runs it from there).
# The ESP sync hooks go where their callers look, whatever PREFIX is: kernel-install reads
# only /etc/kernel/install.d and /usr/lib/kernel/install.d, update-initramfs only
# /etc/initramfs/post-update.d, mkinitcpio /etc/initcpio/post and /usr/lib/initcpio/post.
KERNEL_INSTALL_DIR ?= /usr/lib/kernel/install.d
INITRAMFS_POST_UPDATE_DIR ?= /etc/initramfs/post-update.d
MKINITCPIO_POST_DIR ?= /usr/lib/initcpio/post
INSTALLED := $(PREFIX)/sbin/zroam $(PREFIX)/share/man/man8/zroam.8 $(PREFIX)/share/man/man7/zroam-boot.7 $(PREFIX)/lib/zroam $(PREFIX)/share/zroam $(PREFIX)/lib/dracut/modules.d/90zroam \
  $(PREFIX)/share/initramfs-tools/hooks/zroam $(PREFIX)/share/initramfs-tools/scripts/zroam \
  $(PREFIX)/share/initramfs-tools/scripts/init-top/preload-zroam \
  $(PREFIX)/share/initramfs-tools/conf.d/zroam \
  $(PREFIX)/lib/initcpio/install/zroam $(PREFIX)/lib/initcpio/hooks/zroam \
  $(KERNEL_INSTALL_DIR)/96-zroam-esp.install $(INITRAMFS_POST_UPDATE_DIR)/zroam-esp \
  $(MKINITCPIO_POST_DIR)/zroam-esp

install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/zroam
	install -D -m 0644 target/man/zroam.8 $(DESTDIR)$(PREFIX)/share/man/man8/zroam.8
	install -D -m 0644 target/man/zroam-boot.7 $(DESTDIR)$(PREFIX)/share/man/man7/zroam-boot.7
	install -D -m 0644 initramfs-tools/share/zroam-install.sh $(DESTDIR)$(PREFIX)/lib/zroam/zroam-install.sh
	install -D -m 0755 $(dir $(BIN))zroam-image $(DESTDIR)$(PREFIX)/lib/zroam/zroam-image
	install -d $(DESTDIR)$(PREFIX)/share/zroam/key.d
	install -m 0755 initramfs-tools/share/key.d/* $(DESTDIR)$(PREFIX)/share/zroam/key.d/
	install -d $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90zroam
	install -m 0755 dracut/90zroam/*.sh $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90zroam/
	install -m 0644 dracut/90zroam/zroam.service dracut/90zroam/zroam-preload.service $(DESTDIR)$(PREFIX)/lib/dracut/modules.d/90zroam/
	install -D -m 0755 initramfs-tools/hooks/zroam $(DESTDIR)$(PREFIX)/share/initramfs-tools/hooks/zroam
	install -D -m 0644 initramfs-tools/scripts/zroam $(DESTDIR)$(PREFIX)/share/initramfs-tools/scripts/zroam
	install -D -m 0755 initramfs-tools/scripts/init-top/preload-zroam $(DESTDIR)$(PREFIX)/share/initramfs-tools/scripts/init-top/preload-zroam
	install -D -m 0644 initramfs-tools/conf.d/zroam $(DESTDIR)$(PREFIX)/share/initramfs-tools/conf.d/zroam
	install -D -m 0644 mkinitcpio/install/zroam $(DESTDIR)$(PREFIX)/lib/initcpio/install/zroam
	install -D -m 0644 mkinitcpio/hooks/zroam $(DESTDIR)$(PREFIX)/lib/initcpio/hooks/zroam
	install -D -m 0755 initramfs-tools/share/kernel-install/96-zroam-esp.install $(DESTDIR)$(KERNEL_INSTALL_DIR)/96-zroam-esp.install
	install -D -m 0755 initramfs-tools/post-update.d/zroam-esp $(DESTDIR)$(INITRAMFS_POST_UPDATE_DIR)/zroam-esp
	install -D -m 0755 mkinitcpio/post/zroam-esp $(DESTDIR)$(MKINITCPIO_POST_DIR)/zroam-esp

# The Debian package, from the tree `make install` gives (agent/debian/build-deb.sh).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)
deb: build man
	rm -rf target/deb
	$(MAKE) -s install DESTDIR=$(CURDIR)/target/deb/root PREFIX=/usr
	bash agent/debian/build-deb.sh target/deb/root target/debian $(VERSION)

uninstall:
	rm -rf $(addprefix $(DESTDIR),$(INSTALLED))
