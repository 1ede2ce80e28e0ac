# Mamori: the two commands of the README, plus helpers.
#   make run   install what is missing, build, start the platform with a simulated fleet
#   make test  install what is missing, build, run every test (unit, integration,
#              sanitizers, fuzz smoke) and print a summary
BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc)
RUN_DIR    ?= $(CURDIR)/run-data
SIM_DEVICES ?= 5

.PHONY: all deps deps-test build run test test-unit test-san test-fuzz format lint clean bench

all: build

deps:
	@scripts/install-deps.sh

deps-test:
	@scripts/install-deps.sh --test

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

run: build
	@scripts/run.sh "$(BUILD)" "$(RUN_DIR)" "$(SIM_DEVICES)"

test: deps-test
	@scripts/test.sh "$(BUILD)" "$(BUILD_SAN)" "$(BUILD_FUZZ)" "$(JOBS)"

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

lint:
	@scripts/lint.sh

bench: build
	@bench/run-all.sh "$(BUILD)" | tee bench/last-run.txt

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
