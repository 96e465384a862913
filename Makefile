# moat: convenience targets around CMake. See README.md.
#
#   make              release build (RelWithDebInfo) into build/, binary build/moat
#   make deps         install missing build + test dependencies (deploy/deps.sh, needs root)
#   make check        deps, release build + all tests, then ASan+UBSan build + all tests again
#   make demo         deps, release build, then deploy/demo.sh
#   make bench        deps (with bench tools), release build, then bench/run.sh (moat vs nginx)
#   make bench-ondemand  deps (with bench tools), release build, then bench/ondemand.sh
#                     (on-demand TLS: first request for a new name, moat vs Caddy, local Pebble)
#   make fuzz         libFuzzer drivers (clang) for the request-head and config parsers, 60 s each
#   make image        container image localhost/moat:latest with podman, no Docker daemon
#                     (deploy/image.sh; docs/deployment.md)
#   make check-image  build the image, then test it (tests/image/test_image.sh; not in make check)
#   make clean        remove the build directories

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
CMAKE_ARGS ?=
CTEST = ctest --output-on-failure --no-tests=error -j$(CTEST_JOBS)
# cmake --build runs its own make: keep this make's flags and nesting level out of it
# (no "Entering directory" noise, no jobserver warnings; -j is passed explicitly).
CMAKE_BUILD = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Steps must run in order (deps before the build, release tests before the sanitizer pass);
# the parallelism is inside cmake --build and ctest.
.NOTPARALLEL:
.PHONY: all build deps deps-bench test asan test-asan check demo bench bench-ondemand fuzz image check-image clean

all: build

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)
	$(CMAKE_BUILD) $(BUILD_DIR) -j$(JOBS)

deps:
	bash deploy/deps.sh

deps-bench:
	bash deploy/deps.sh bench

test: build
	$(CTEST) --test-dir $(BUILD_DIR)

asan:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON $(CMAKE_ARGS)
	$(CMAKE_BUILD) $(ASAN_DIR) -j$(JOBS)

test-asan: asan
	$(SAN_ENV) $(CTEST) --test-dir $(ASAN_DIR)

check: deps test test-asan

demo: deps build
	bash deploy/demo.sh

bench: deps-bench build
	bash bench/run.sh

bench-ondemand: deps-bench build
	bash bench/ondemand.sh

FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	command -v clang >/dev/null || apt-get install -y -q clang
	CC=clang cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=Debug -DMOAT_FUZZ=ON -DBUILD_TESTING=OFF
	$(CMAKE_BUILD) $(FUZZ_DIR) -j$(JOBS) --target fuzz_request_head fuzz_config
	mkdir -p $(FUZZ_DIR)/corpus/request_head $(FUZZ_DIR)/corpus/config
	cp tests/unit/config/fixtures/*.json $(FUZZ_DIR)/corpus/config/
	$(FUZZ_DIR)/tests/fuzz/fuzz_request_head -max_total_time=$(FUZZ_SECONDS) -max_len=8192 $(FUZZ_DIR)/corpus/request_head
	$(FUZZ_DIR)/tests/fuzz/fuzz_config -max_total_time=$(FUZZ_SECONDS) $(FUZZ_DIR)/corpus/config

image:
	bash deploy/image.sh

check-image:
	bash tests/image/test_image.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
