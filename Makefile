# moat: convenience targets around CMake. See README.md.
#
#   make              release build (RelWithDebInfo) into build/, binary build/moat
#   make deps         install missing build + test dependencies (deploy/deps.sh, needs root)
#   make check        deps, release build + all tests, then ASan+UBSan build + all tests again
#   make demo         deps, release build, then deploy/demo.sh
#   make bench        deps (with bench tools), release build, then bench/run.sh (moat vs nginx)
#   make clean        remove the build directories

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
CMAKE_ARGS ?=
CTEST = ctest --output-on-failure --no-tests=error -j$(CTEST_JOBS)
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Steps must run in order (deps before the build, release tests before the sanitizer pass);
# the parallelism is inside cmake --build and ctest.
.NOTPARALLEL:
.PHONY: all build deps deps-bench test asan test-asan check demo bench clean

all: build

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j$(JOBS)

deps:
	bash deploy/deps.sh

deps-bench:
	bash deploy/deps.sh bench

test: build
	$(CTEST) --test-dir $(BUILD_DIR)

asan:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DMOAT_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(ASAN_DIR) -j$(JOBS)

test-asan: asan
	$(SAN_ENV) $(CTEST) --test-dir $(ASAN_DIR)

check: deps test test-asan

demo: deps build
	bash deploy/demo.sh

bench: deps-bench build
	bash bench/run.sh

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
