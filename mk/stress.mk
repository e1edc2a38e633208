# The long differential stress run (tests/test-stress.sh, tests/stress.py).
#
#   make stress                     5 variants x 200000 operations, no
#                                   time limit (about 15-25 minutes here)
#   make stress STRESS_OPS=N        operations per variant
#   make stress STRESS_SEED=S       base seed (printed by every run)
#   make stress STRESS_THREADS=N    client connections per variant
#   make stress STRESS_ONLY=REGEX   only the variants whose label matches
#   make stress STRESS_ARGS=...     more arguments for stress.py
#
# `make check` runs the same script briefly (a time limit per variant).

STRESS_OPS ?= 200000
STRESS_TIME ?= 0
STRESS_THREADS ?= 4
STRESS_SEED ?=
STRESS_ONLY ?=
STRESS_ARGS ?=

.PHONY: stress

stress: all
	STRESS_OPS='$(STRESS_OPS)' STRESS_TIME='$(STRESS_TIME)' \
	STRESS_THREADS='$(STRESS_THREADS)' STRESS_SEED='$(STRESS_SEED)' \
	STRESS_ONLY='$(STRESS_ONLY)' STRESS_ARGS='$(STRESS_ARGS)' \
	  tests/test-stress.sh
