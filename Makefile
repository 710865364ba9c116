# kite — GNU make build. Objects go to $(BUILD); the binary is $(BUILD)/kite.
# `make SAN=1` builds everything with AddressSanitizer + UBSan into build/san/.
CC      ?= gcc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT     := -O1
else
BUILD   ?= build
SANFLAGS :=
OPT     := -O2
endif

CFLAGS  := -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -Isrc -MMD -MP -pthread \
           -D_GNU_SOURCE $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SANFLAGS)
LDLIBS  := -lZydis -lm -luring -lslirp -ljson-c

SRCS      := $(shell find src -name '*.c' | sort)
OBJS      := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/src/main.o,$(OBJS))
TEST_SRCS := $(shell find tests/unit -name '*.c' | sort)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
DIFF_SRCS := $(wildcard tests/diff/*.c)
DIFF_OBJS := $(DIFF_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all test unit diff integration integration-short test-san clean guests fuzz fuzz-quick bench-blk bench-soft
all: $(BUILD)/kite guests

$(BUILD)/kite: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/unit-tests: $(TEST_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

unit: $(BUILD)/unit-tests
	@scripts/fetch-kernel.sh >/dev/null || echo "unit: could not fetch Debian's kernel; the tests that need it skip" >&2
	$(BUILD)/unit-tests --jobs 2

# Differential test of the soft CPU against the host CPU (tests/diff):
# `make diff` is the bounded quick pass (DIFF_ARGS adds options, e.g.
# DIFF_ARGS="--skip 'x87*'"); bench/diff-fuzz.sh is the long one.
$(BUILD)/diff-test: $(DIFF_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

diff: $(BUILD)/diff-test
	$(BUILD)/diff-test --vendor-selftest
	$(BUILD)/diff-test --quick $(DIFF_ARGS)

integration: all
	KITE=$(abspath $(BUILD)/kite) /usr/bin/python3 -m pytest -q tests/integration

# The short integration suites (test guests, no Linux boots): also run under
# ASan+UBSan by test-san.
SHORT_SUITES := tests/integration/test_guests.py tests/integration/test_sys_guests.py \
                tests/integration/test_virtio_guest.py tests/integration/test_virtio_console.py
integration-short: all
	KITE=$(abspath $(BUILD)/kite) /usr/bin/python3 -m pytest -q $(SHORT_SUITES)

test-san:
	$(MAKE) --no-print-directory SAN=1 unit integration-short

test: fuzz-quick unit diff integration test-san

# libFuzzer harnesses (tests/fuzz/fuzz_*.c), built with clang and sanitizers
# straight from the sources they exercise. fuzz-quick: a bounded pass each.
FUZZ_CC    ?= clang
FUZZ_DIR   := build/fuzz
FUZZ_FLAGS := -std=gnu11 -g -O1 -Isrc -Itests/unit -D_GNU_SOURCE -pthread \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB   := src/devices/virtio/virtqueue.c src/devices/virtio/virtio.c \
              src/devices/virtio/virtio_blk.c $(wildcard src/backends/block/*.c) \
              src/vmm/memory.c src/util/log.c
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECS  ?= 10

$(FUZZ_DIR)/%: tests/fuzz/%.c $(FUZZ_LIB) $(wildcard src/devices/virtio/*.h src/backends/block/*.h) tests/unit/virtq_driver.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIB) -luring

# The API harness: the HTTP server, router and handlers with json-c.
FUZZ_API_LIB := $(wildcard src/api/*.c) src/util/metrics.c src/util/log.c src/vmm/config_file.c \
                src/vmm/placement.c
$(FUZZ_DIR)/fuzz_http: tests/fuzz/fuzz_http.c $(filter-out src/api/instance.c,$(FUZZ_API_LIB)) $(wildcard src/api/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -o $@ $< \
		$(filter-out src/api/instance.c,$(FUZZ_API_LIB)) -ljson-c -lm
	@mkdir -p $@.corpus && cp tests/fuzz/corpus_http/* $@.corpus/

fuzz: $(FUZZ_BINS)

fuzz-quick:
	@if ! command -v $(FUZZ_CC) >/dev/null; then \
		echo "fuzz-quick: skipped, $(FUZZ_CC) (libFuzzer) is not installed"; exit 0; fi; \
	$(MAKE) --no-print-directory fuzz || exit 1; \
	for f in $(FUZZ_BINS); do \
		mkdir -p $$f.corpus; \
		echo "fuzz: $$f ($(FUZZ_SECS) s)"; \
		$$f -max_total_time=$(FUZZ_SECS) -seed=1 -print_final_stats=0 \
		    -error_exitcode=77 -artifact_prefix=$$f- $$f.corpus 2>$$f.log || { tail -40 $$f.log; exit 1; }; \
		grep -E '^Done [0-9]+ runs' $$f.log || true; \
	done

# Device-model throughput against direct host I/O (bench/RESULTS.md).
$(BUILD)/bench/blk_model: bench/blk_model.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LDLIBS)

bench-blk: $(BUILD)/bench/blk_model
	$(BUILD)/bench/blk_model

# Soft-engine instructions per second against the same code run natively.
$(BUILD)/bench/soft_mips: bench/soft_mips.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_OBJS) $(LDFLAGS) $(LDLIBS)

bench-soft: $(BUILD)/bench/soft_mips
	$(BUILD)/bench/soft_mips

-include guests/guests.mk

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(DIFF_OBJS:.o=.d)
