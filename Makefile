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

.PHONY: all test unit integration clean guests
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

integration: all
	KITE=$(abspath $(BUILD)/kite) /usr/bin/python3 -m pytest -q tests/integration

test: unit integration

-include guests/guests.mk

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(TEST_OBJS:.o=.d)
