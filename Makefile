# Top-level entry points. `make run` and `make test` do the whole set-up on a
# fresh Debian 12 machine: install missing packages, configure, build, make dev
# certificates, then run a single node or the test suites.
#
#   make run     build and start kshimd on 127.0.0.1:2379 (data in ./default.kshim)
#   make test    unit tests under ASan+UBSan, then unit + e2e tests, ctest summary last
#   make bench   side-by-side benchmark against real etcd (bench/run.sh)
#   make e2e-etcd  etcd 3.4's own e2e suite against build/kshimd (~25 min, not in make test)
#   make soak    3 members, mixed load and faults for SOAK_MINUTES (60); RSS/fds every minute
#   make fuzz    libFuzzer targets of tests/fuzz/, FUZZ_SECONDS each (not in CI)
#   make man     build/kshimd.1 from `kshimd --help` (help2man, installed on demand)

SHELL := /bin/bash
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
SUDO  := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Build tools and libraries, then the real clients and etcd used as test truth.
DEBS := build-essential cmake pkg-config git openssl \
        libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libwolfssl-dev \
        libleveldb-dev libcmocka-dev libcrypt-dev libhttp-parser-dev libyaml-dev libjson-c-dev \
        etcd-server etcd-client python3-etcd3 golang-go golang-etcd-server-dev \
        python3-h2 python3-etcd3gw python3-prometheus-client iproute2 procps psmisc curl clang-format

.PHONY: all deps build build-asan certs run test test-release-e2e unit bench e2e-etcd soak fuzz man clean

all: build

deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Debian's etcd-server package starts a system etcd on 2379: we want the port.
	@if systemctl is-active --quiet etcd 2>/dev/null; then $(SUDO) systemctl stop etcd; $(SUDO) systemctl disable etcd >/dev/null 2>&1 || true; fi

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$(JOBS)

# The sanitizer build is optimized as the release one (-O2 -g, asserts kept):
# the e2e suite runs against it in make test, within the time budget.
build-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKSHIM_SANITIZE=ON >/dev/null
	cmake --build build-asan -j$(JOBS)

certs: deps
	bash certs/gen.sh certs/dev

run: build certs
	exec build/kshimd --name default --data-dir ./default.kshim \
	  --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
	  --cert-file certs/dev/server.crt --key-file certs/dev/server.key \
	  --trusted-ca-file certs/dev/ca.crt --client-cert-auth

# Coverage-guided fuzzing with clang's libFuzzer (tests/fuzz/run.sh prints
# executions and coverage per target). make test runs every target's short
# replay instead (unit/fuzz_replay_*).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := grpc_frame wal etcd_wal auth_token kv_request config_file client_conn peer_codec \
                bbolt_reader gateway_json snapshot_recv store_values
fuzz: deps
	@missing=$$(for p in clang libclang-rt-14-dev; do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKSHIM_FUZZ=ON -DKSHIM_E2E=OFF >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# The man page is not part of the default build: help2man is installed here
# only, as make fuzz does for clang.
man: build
	@dpkg-query -W -f='$${Status}\n' help2man 2>/dev/null | grep -q '^install ok installed' || \
	  { $(SUDO) apt-get install -y -qq help2man >/dev/null; }
	cmake -S . -B build >/dev/null
	cmake --build build --target man
	@echo "man page: build/kshimd.1 (man -l build/kshimd.1)"

unit: build-asan
	cd build-asan && ctest -L unit --output-on-failure

# Within the 20-minute budget on 2 cores: every unit test and every e2e
# test against the sanitizer build (ASan+UBSan+LSan, -O2 -g), e2e tests two
# at a time, each in a network namespace of its own (e2e/isolated.sh; the
# timing-bound ones alone, e2e/CMakeLists.txt), then a smoke run of the
# client-facing e2e tests against the release build, the binary that ships
# (with test_resource_limits, whose memory bounds hold for that build only).
# Any sanitizer report fails the run, even one from a server a test killed:
# reports go to build-asan/sanitizer-reports/ (log_path). e2e's watch stress
# test writes 40,000 times instead of 100,000 (WATCH_STRESS_OPS=100000 for
# the full run). Side by side needs root (network namespaces); otherwise the
# e2e tests run one at a time. `make test-release-e2e`: every e2e test
# against the release build.
WATCH_STRESS_OPS ?= 40000
SAN_DIR := $(CURDIR)/build-asan/sanitizer-reports
SAN_ENV := ASAN_OPTIONS=log_path=$(SAN_DIR)/asan UBSAN_OPTIONS=log_path=$(SAN_DIR)/ubsan:print_stacktrace=1
E2E_JOBS := $(if $(filter 0,$(shell id -u)),2,1)
RELEASE_SMOKE := e2e/test_(etcdctl_kv|python_kv|watch_kube|http_gateway|lease_etcdctl|resource_limits)

test: build build-asan certs
	rm -rf $(SAN_DIR) && mkdir -p $(SAN_DIR)
	cd build-asan && $(SAN_ENV) ctest -L unit --output-on-failure -j$(JOBS)
	cd build-asan && $(SAN_ENV) WATCH_STRESS_OPS=$(WATCH_STRESS_OPS) ctest -L '^e2e$$' --output-on-failure -j$(E2E_JOBS)
	@if [ -n "$$(ls -A $(SAN_DIR))" ]; then echo "sanitizer reports:"; head -50 $(SAN_DIR)/*; exit 1; fi
	cd build && ctest -R '$(RELEASE_SMOKE)' --output-on-failure -j$(E2E_JOBS)

# Every e2e test against the release build.
test-release-e2e: build certs
	cd build && WATCH_STRESS_OPS=$(WATCH_STRESS_OPS) ctest -L '^e2e$$' --output-on-failure -j$(E2E_JOBS)

# fio (etcd's disk check) gives the report its fdatasync floor; installed here
# only, as make fuzz does for clang.
bench: build certs
	@dpkg-query -W -f='$${Status}\n' fio 2>/dev/null | grep -q '^install ok installed' || \
	  { $(SUDO) apt-get install -y -qq fio >/dev/null; }
	bash bench/run.sh

# etcd's own e2e suite (all 243 tests) through ../shared/anchors; counts, then
# the failures checked against e2e/etcd-suite/expected-failures.txt.
e2e-etcd: build
	bash e2e/etcd-suite/run.sh

# An hour (SOAK_MINUTES) of load with kills, partitions, pauses and leader
# moves on a 3-member cluster; a table of RSS and fds every minute (e2e/soak.sh).
SOAK_MINUTES ?= 60
soak: build
	KSHIMD=$(CURDIR)/build/kshimd SOAK_MINUTES=$(SOAK_MINUTES) bash e2e/soak.sh

clean:
	rm -rf build build-asan build-fuzz
