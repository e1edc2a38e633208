# Fuzzing the extent map with libFuzzer (clang, ASan, UBSan).
#
#   make fuzz [FUZZ_SECONDS=60]   build build/fuzz-map and run it on a
#                                 copy of fuzz/corpus in build/
#   make fuzz-quick               the same for 10 seconds (for make check)
#
# The fuzzer aborts on any divergence from its model; libFuzzer then
# writes the input to build/fuzz-crash-* and exits non-zero.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
# Extra libFuzzer flags, e.g. FUZZ_FLAGS='-max_len=128 -jobs=2 -workers=2'
# for many short runs.
FUZZ_FLAGS ?=
FUZZ_CFLAGS = -std=gnu11 $(WARN) -D_GNU_SOURCE -g -O1 \
	-fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined
FUZZ_CORPUS = $(BUILD)/fuzz-corpus

.PHONY: fuzz fuzz-quick

$(BUILD)/fuzz-map: fuzz/fuzz-map.c src/map.c src/map.h | $(BUILD)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Isrc -o $@ fuzz/fuzz-map.c src/map.c

fuzz: $(BUILD)/fuzz-map
	rm -rf $(FUZZ_CORPUS)
	cp -r fuzz/corpus $(FUZZ_CORPUS)
	$(BUILD)/fuzz-map -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	  $(FUZZ_FLAGS) \
	  -artifact_prefix=$(BUILD)/fuzz- $(FUZZ_CORPUS)

fuzz-quick:
	@if command -v $(FUZZ_CC) >/dev/null 2>&1; then \
	  $(MAKE) fuzz FUZZ_SECONDS=10; \
	else \
	  echo "fuzz-quick: $(FUZZ_CC) not found, skipped"; \
	fi
