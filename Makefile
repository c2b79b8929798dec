# The commands the README tells people to type. The real work is in
# scripts/ and meson; this file only names it.
BUILD ?= build

.PHONY: all setup build release kernel node test test-unit test-vm test-long fuzz-long demo clean help

all: build

help:
	@echo "make demo    set up, build, and run the main job end to end"
	@echo "make test    set up, build (kernel too), run the unit and vm suites"
	@echo "make test-long  the vm suite with its long runs (200 restores, 50 crashes)"
	@echo "make setup   install the Debian packages the project needs"
	@echo "make build   configure and build into ./$(BUILD) (debug)"
	@echo "make release configure and build into ./build-release (optimized)"
	@echo "make kernel  build (or find in the cache) the guest kernel"
	@echo "make fuzz-long  run every fuzz target for FUZZ_SECONDS in all (default 3600; not CI)"

setup:
	@scripts/setup

build:
	@scripts/build $(BUILD)

release:
	@scripts/build build-release --buildtype=release

kernel:
	@kernel/build >/dev/null

test:
	@scripts/test

test-unit:
	@scripts/test --suite unit

test-vm:
	@scripts/test --suite vm

# What CI has no time for: 200 restores per vCPU count in the snapshot
# test, 50 killed workers in the crash test, and the vm tests that skip
# without SUPERMACHINE_TEST_LONG=1 (mounts, crash, cli_net, and hostile's
# larger floods).
test-long:
	@SUPERMACHINE_TEST_LONG=1 SUPERMACHINE_SNAPSHOT_RESTORES=200 SUPERMACHINE_CRASH_ROUNDS=50 SUPERMACHINE_CRASH_BAKE_ROUNDS=10 scripts/test --suite vm

# Every libFuzzer target for FUZZ_SECONDS in all (tests/fuzz/run-long).
fuzz-long:
	@tests/fuzz/run-long

demo:
	@scripts/demo

clean:
	rm -rf $(BUILD) build-test build-release build-fuzz

# The Node.js binding (bindings/node, docs/node.md) against ./$(BUILD).
node: build
	@SUPERMACHINE_BUILD_DIR=$(BUILD) bindings/node/build.sh
