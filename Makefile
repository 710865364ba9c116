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
LDLIBS  := -lZydis -lm

SRCS      := $(shell find src -name '*.c' | sort)
OBJS      := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS  := $(filter-out $(BUILD)/src/main.o,$(OBJS))
TEST_SRCS := $(shell find tests/unit -name '*.c' | sort)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
DIFF_SRCS := $(wildcard tests/diff/*.c)
DIFF_OBJS := $(DIFF_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all test unit diff integration clean guests
all: $(BUILD)/kite guests

$(BUILD)/kite: $(OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/unit-tests: $(TEST_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests --jobs 2

# Differential test of the soft CPU against the host CPU (tests/diff):
# `make diff` is the bounded quick pass; bench/diff-fuzz.sh the long one.
$(BUILD)/diff-test: $(DIFF_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

diff: $(BUILD)/diff-test
	$(BUILD)/diff-test --quick

integration: all
	KITE=$(abspath $(BUILD)/kite) /usr/bin/python3 -m pytest -q tests/integration

test: unit diff integration

-include guests/guests.mk

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(DIFF_OBJS:.o=.d)
