# modelstream - build, test, bench, fuzz, sanitizers, format, install.
#
#   make            the library (shared + static), the CLI and the pkg-config file
#   make test       installs what is missing, then runs every check CI runs
#   make demo       installs what is missing, then fetches a generated model from a local
#                   S3 server into a node cache and streams it
#   make bench      benchmarks against memcpy, cat, Python safetensors, Run:ai
#   make fuzz       fuzzes the header parser for FUZZ_SECONDS (default 60)
#   make SANITIZE=address,undefined test-unit    one sanitizer build of the unit tests
#   make install PREFIX=/usr/local

SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

PREFIX    ?= /usr/local
CC        ?= cc
SANITIZE  ?=
B         ?= build$(if $(SANITIZE),-$(subst $(comma),-,$(SANITIZE)))
comma     := ,

VERSION   := 0.3.0
SOMAJOR   := 1

WARNINGS  := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes -Wformat=2 -Werror
OPT       ?= -O2 -g
SANFLAGS  := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all)
CPPFLAGS  += -D_GNU_SOURCE -Ilib/include -Ilib
CFLAGS    += $(WARNINGS) $(OPT) $(SANFLAGS) -fPIC -pthread
LDFLAGS   += $(SANFLAGS) -pthread
LIB_LIBS  := -lcurl -lcjson -lexpat -lcrypto -lm
CMD_LIBS  := -lyaml -lwebsockets

# The core in lib/, back ends and the node cache in folders of their own (lib/s3/, lib/cache/).
LIB_SRC   := $(wildcard lib/*.c lib/*/*.c)
LIB_HDR   := $(wildcard lib/*.h lib/*/*.h lib/include/*.h)
LIB_OBJ   := $(LIB_SRC:%.c=$(B)/%.o)
CMD_SRC   := $(wildcard cmd/modelstream/*.c)
CMD_OBJ   := $(CMD_SRC:%.c=$(B)/%.o)
SUP_SRC   := tests/support/stgen.c
SUP_OBJ   := $(SUP_SRC:%.c=$(B)/%.o)
TEST_SRC  := $(wildcard tests/test_*.c tests/s3/test_*.c tests/cache/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(B)/tests/%)

SONAME    := libmodelstream.so.$(SOMAJOR)
SHARED    := $(B)/libmodelstream.so.$(VERSION)
STATIC    := $(B)/libmodelstream.a
CLI       := $(B)/modelstream
MKMODEL   := $(B)/mkmodel

.PHONY: all lib cli gpu-tools gpu-rehearsal device-stress python-install python-tests vllm-tests wheel bench-python test test-unit test-fast check-sanitizers stress valgrind crosscheck cli-tests sigv4-vectors s3fault-selftest s3-tests moto-tests creds-tests cache-tests netns-tests server-tests agent-tests e2e deps demo bench fuzz fuzz-regress \
        headercheck format format-check style-check install install-check uninstall clean

all: lib cli $(MKMODEL) $(B)/modelstream.pc

lib: $(SHARED) $(STATIC)
cli: $(CLI)

# V=1 shows the full commands.
Q := $(if $(V),,@)

$(B)/lib/%.o: lib/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -DMS_BUILDING_LIBRARY -fvisibility=hidden $(CFLAGS) -c $< -o $@

$(B)/cmd/%.o: cmd/%.c $(wildcard cmd/modelstream/*.h lib/include/*.h)
	@mkdir -p $(@D)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/tests/%.o: tests/%.c $(wildcard tests/support/*.h) $(LIB_HDR)
	@mkdir -p $(@D)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -c $< -o $@

# The fetch configuration loader (cmd/) has a unit test of its own, linked with libyaml.
$(B)/cmd/modelstream/config.o: lib/alloc.h
$(B)/tests/test_config.o: cmd/modelstream/config.h
$(B)/tests/test_config: $(B)/tests/test_config.o $(B)/cmd/modelstream/config.o $(SUP_OBJ) \
                        $(B)/tests/support/testutil.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS) -lyaml -lcriterion

# The health server's status store (cmd/) has a unit test of its own.
$(B)/tests/test_status.o: cmd/modelstream/status.h
$(B)/tests/test_status: $(B)/tests/test_status.o $(B)/cmd/modelstream/status.o $(SUP_OBJ) \
                        $(B)/tests/support/testutil.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS) -lcriterion

# The health server over a simulated fetch, for tests/server_tests.sh.
$(B)/tests/server_driver.o: cmd/modelstream/server.h cmd/modelstream/status.h
$(B)/tests/server_driver: $(B)/tests/server_driver.o $(B)/cmd/modelstream/server.o \
                          $(B)/cmd/modelstream/status.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS) -lwebsockets

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)
	ln -sf $(notdir $@) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libmodelstream.so

$(STATIC): $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

# The CLI links the library statically: one self-contained binary for containers.
$(CLI): $(CMD_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(STATIC) $(LIB_LIBS) $(CMD_LIBS)

$(MKMODEL): $(B)/tests/support/mkmodel.o $(SUP_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^

$(B)/modelstream.pc: modelstream.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

# Unit tests see the library's internals through the static archive.
$(B)/tests/test_%: $(B)/tests/test_%.o $(SUP_OBJ) $(B)/tests/support/testutil.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS) -lcriterion

# The tests of lib/s3/ and lib/cache/ sit in folders of the same names.
$(B)/tests/s3/test_%: $(B)/tests/s3/test_%.o $(SUP_OBJ) $(B)/tests/support/testutil.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS) -lcriterion

$(B)/tests/cache/test_%: $(B)/tests/cache/test_%.o $(SUP_OBJ) $(B)/tests/support/testutil.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS) -lcriterion

# A stand-in for libcuda.so.1, so that the driver paths of lib/sink_cuda.c run without a GPU.
$(B)/tests/libfakecuda.so: tests/support/fake_cuda.c tests/support/fake_cuda.h
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O2 -Wall -Wextra -Werror -pthread -o $@ $<
$(B)/tests/test_sink_cuda $(B)/tests/test_device: | $(B)/tests/libfakecuda.so

# What tests/gpu/run.sh runs on a machine with a GPU (and rehearses here on the stand-in):
# correctness against the real driver, and the PCIe limit the figures are measured against.
GPU_TOOLS := $(B)/tests/gpu/gpu_check $(B)/tests/gpu/pcie_bench
$(B)/tests/gpu/gpu_check: $(B)/tests/gpu/gpu_check.o $(SUP_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)
$(B)/tests/gpu/pcie_bench: $(B)/tests/gpu/pcie_bench.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)
gpu-tools: $(GPU_TOOLS) $(CLI) $(MKMODEL) $(B)/tests/libfakecuda.so

# The Python package (python/): installed from the checkout the way a user does it, then
# its tests (tests/python/) against the bytes in the files, moto S3 and the C library.
python-install: lib
	MODELSTREAM_BUILD=$(abspath $(B)) python3 -m pip install -q --no-deps --no-build-isolation \
	  --force-reinstall ./python
python-tests: python-install $(MKMODEL) $(B)/tests/libfakecuda.so
	cd tests/python && MODELSTREAM_BUILD=$(abspath $(B)) python3 -m pytest -q -p no:cacheprovider . \
	  | tee $(abspath $(B))/python-tests.log

# The vLLM load format against vLLM itself, in the virtual environment scripts/deps.sh
# makes for it (vLLM pins its own torch): the package installed there, test_vllm.py run by
# its Python.
VLLM_VENV ?= $(or $(MODELSTREAM_VLLM_VENV),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/modelstream/vllm-0.33.0)
vllm-tests: lib $(MKMODEL)
	@test -x $(VLLM_VENV)/bin/python || { echo "vllm-tests: no vLLM in $(VLLM_VENV): run scripts/deps.sh"; exit 1; }
	MODELSTREAM_BUILD=$(abspath $(B)) $(VLLM_VENV)/bin/python -m pip install -q --no-deps \
	  --no-build-isolation --force-reinstall ./python
	cd tests/python && MODELSTREAM_BUILD=$(abspath $(B)) MODELSTREAM_NEED_VLLM=1 \
	  $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider test_vllm.py \
	  | tee $(abspath $(B))/vllm-tests.log

# A wheel that carries libmodelstream.so.1, for pip install elsewhere (make wheel).
wheel: lib
	rm -rf python/build && MODELSTREAM_BUILD=$(abspath $(B)) python3 -m pip wheel -q --no-deps \
	  --no-build-isolation -w $(B)/wheels ./python
	@ls $(B)/wheels/modelstream-*.whl

# tests/gpu/run.sh's every step without a GPU, on the stand-in driver (make test runs it, so
# that the script is known to work before a GPU machine's short time is spent on it).
gpu-rehearsal: gpu-tools
	tests/gpu/run.sh --rehearse | tee $(B)/gpu-rehearsal.log

# Where the CUDA toolkit is installed, the library's declarations of the driver entry points
# are held against cuda.h (the build itself never needs the toolkit).
CUDA_H ?= /usr/local/cuda/include/cuda.h
cuda-check:
	@if [ -f "$(CUDA_H)" ]; then \
	  $(CC) $(CPPFLAGS) -DMS__CUDA_CHECK -I$(dir $(CUDA_H)) $(CFLAGS) -fsyntax-only lib/sink_cuda.c && \
	  echo "cuda-check: lib/sink_cuda.c declares the driver entry points as $(CUDA_H) does"; \
	else echo "cuda-check: no $(CUDA_H) here; skipped"; fi

# ---------------------------------------------------------------------------------------
# Tests

# The README's test command: everything CI checks, after installing what is missing.
test: deps
	$(MAKE) --no-print-directory format-check style-check headercheck cuda-check
	$(MAKE) --no-print-directory all install-check fuzz-regress
	rm -f build*/unit-results.txt build*/crosscheck.log build*/cli-tests.log build*/stress.log build*/valgrind.log build*/s3fault.log build*/s3-tests.log build*/moto-tests.log build*/creds-tests.log build*/cache-tests.log build*/netns-tests.log build*/server-tests.log build*/agent-tests.log \
	  build*/chart-tests.log build*/image-tests.log build*/e2e.log build*/device-stress.log build*/gpu-rehearsal.log build*/python-tests.log build*/vllm-tests.log
	@rc=0; $(MAKE) --no-print-directory -k test-unit crosscheck cli-tests python-tests vllm-tests valgrind sigv4-vectors s3fault-selftest s3-tests moto-tests creds-tests cache-tests netns-tests server-tests agent-tests chart-tests image-tests e2e gpu-rehearsal check-sanitizers \
	  || rc=$$?; tests/summary.sh build build-address-undefined build-thread || rc=1; exit $$rc

# Unit tests of one build (SANITIZE=... picks which), with huge pages reserved for one
# pass and not for another, so that both arena paths are covered.
test-unit: $(TEST_BIN) $(CLI) $(MKMODEL)
	tests/run-unit.sh $(B) $(TEST_BIN)

# Without the installs and the sanitizer builds: the quick loop while editing.
test-fast: all
	$(MAKE) --no-print-directory -k test-unit crosscheck cli-tests

crosscheck: $(CLI) $(MKMODEL)
	python3 tests/crosscheck.py --modelstream $(CLI) --mkmodel $(MKMODEL) | tee $(B)/crosscheck.log

# The fault-injection S3 server the object-storage tests stand on, tested on its own.
s3fault-selftest:
	@mkdir -p $(B)
	@# Timing-based checks (stalls, throttling, bandwidth) on a shared 2-core machine: a
	@# failed run is shown and run once more, so that a flake is visible but not fatal.
	@python3 tests/support/test_s3fault.py > $(B)/s3fault.full.log 2>&1 || \
	  { grep -E '^(FAIL|ERROR):' $(B)/s3fault.full.log | sed 's/^/s3fault: FLAKY, retrying: /'; \
	    python3 tests/support/test_s3fault.py > $(B)/s3fault.full.log 2>&1; } || \
	  { tail -n 40 $(B)/s3fault.full.log; tail -n 1 $(B)/s3fault.full.log > $(B)/s3fault.log; exit 1; }
	@tail -n 1 $(B)/s3fault.full.log | tee $(B)/s3fault.log

# s3:// end to end against the fault-injecting endpoint.
s3-tests: $(CLI) $(MKMODEL)
	tests/s3_tests.sh $(B) | tee $(B)/s3-tests.log

# The credential chain end to end: moto_server as STS, tests/support/creds_server.py for
# container credentials, IMDSv2 and a token-recording STS.
$(B)/tests/creds_probe: $(B)/tests/creds_probe.o $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)

creds-tests: $(B)/tests/creds_probe
	tests/creds_tests.sh $(B) | tee $(B)/creds-tests.log

# The node cache end to end: fetch into a plain directory, tmpfs with huge pages, a full
# tmpfs and hugetlbfs (mounts need root), single flight, kill -9 and resume, budgets.
cache-tests: $(CLI) $(MKMODEL)
	tests/cache_tests.sh $(B) | tee $(B)/cache-tests.log

# The health server end to end: endpoints, websocket, a real Prometheus, hostile clients;
# then `modelstream fetch --listen` and `serve` and `wait` over a real fetch.
server-tests: $(B)/tests/server_driver $(CLI) $(MKMODEL)
	tests/server_tests.sh $(B) | tee $(B)/server-tests.log

# The node agent's reconcile loop and the pods that read its cache: serve --config with a
# ConfigMap updated the kubelet's way, serve --wait-for holds, wait --cache, cache prepare.
agent-tests: $(CLI) $(MKMODEL)
	tests/agent_tests.sh $(B) | tee $(B)/agent-tests.log

# The fleet: three network-namespace nodes, each with the node agent and three pods as
# containers of the real image under podman, their specs rendered from the Helm chart; a
# moto origin behind a tc-shaped link, a real Prometheus (needs root, else skipped; it
# builds the image first with scripts/image.sh; about a minute).
e2e: $(CLI) $(MKMODEL)
	python3 e2e/fleet.py --build $(B) | tee $(B)/e2e.log

# Nodes sharing one tc-shaped link (network namespaces, needs root, about 55 s): the link is
# filled and each node gets its fair share, for fixed and adaptive concurrency.
netns-tests: $(CLI) $(MKMODEL)
	tests/netns_tests.sh $(B) | tee $(B)/netns-tests.log

# Object storage against a real S3 implementation: moto_server with authentication on.
moto-tests: $(CLI) $(MKMODEL)
	tests/moto_tests.sh $(B) | tee $(B)/moto-tests.log

# The committed SigV4 test vectors still match what botocore computes today.
sigv4-vectors:
	tests/check_sigv4_vectors.sh

cli-tests: $(CLI) $(MKMODEL) $(B)/tests/libfakecuda.so
	tests/cli.sh $(B) | tee $(B)/cli-tests.log

check-sanitizers:
	$(MAKE) --no-print-directory SANITIZE=address,undefined test-unit stress s3-tests moto-tests creds-tests cache-tests server-tests agent-tests
	$(MAKE) --no-print-directory SANITIZE=thread stress device-stress

# The device stage's threads (pump, readers, the stand-in driver's streams) under the
# build's sanitizer: the same checksums as the host path through every copy path.
device-stress: $(CLI) $(MKMODEL) $(B)/tests/libfakecuda.so
	tests/device_stress.sh $(B) | tee $(B)/device-stress.log

# The engine's randomized stress run; the one engine test ThreadSanitizer can run.
STRESS_ROUNDS ?= 40
stress: $(B)/tests/stress_engine
	@rc=0; $(B)/tests/stress_engine $(STRESS_ROUNDS) > $(B)/stress.full.log 2>&1 || rc=$$?; \
	  { grep -E 'FAIL|WARNING|ERROR' $(B)/stress.full.log || true; } | head -20; \
	  tail -n 1 $(B)/stress.full.log | tee $(B)/stress.log; \
	  [ $$rc -eq 0 ] || { echo "stress_engine exited $$rc (see $(B)/stress.full.log)"; \
	                      echo "0 passed, 1 failed" > $(B)/stress.log; exit 1; }

# Valgrind where the sanitizers do not look: the engine's stress run and the CLI on a
# generated model, leak-checked, with a non-zero exit on any error.
VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
	    --error-exitcode=99
valgrind: $(B)/tests/stress_engine $(CLI) $(MKMODEL) $(B)/tests/libfakecuda.so
	@rm -rf $(B)/valgrind && mkdir -p $(B)/valgrind
	$(MKMODEL) --small-count 300 --large-count 2 --large-bytes 1M $(B)/valgrind/m.safetensors >/dev/null
	$(VALGRIND) $(B)/tests/stress_engine 4 > $(B)/valgrind/stress.log
	$(VALGRIND) $(CLI) stream $(B)/valgrind/m.safetensors --memory-limit 0 --checksum > /dev/null
	MODELSTREAM_CUDA_DRIVER=$(abspath $(B))/tests/libfakecuda.so $(VALGRIND) $(CLI) stream \
	  $(B)/valgrind/m.safetensors --device cuda:0 --memory-limit 2M --checksum > /dev/null
	$(VALGRIND) $(CLI) inspect $(B)/valgrind/m.safetensors --json > /dev/null
	@echo "valgrind: no errors, no leaks" | tee $(B)/valgrind.log
	@echo "3 passed, 0 failed" >> $(B)/valgrind.log

$(B)/tests/stress_engine: $(B)/tests/stress_engine.o $(SUP_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIB_LIBS)

deps:
	@scripts/deps.sh

headercheck:
	@mkdir -p $(B)
	$(CC) -std=c11 -Wall -Wextra -Wpedantic -Werror -Ilib/include -c tests/headercheck.c -o $(B)/headercheck.o
	$(CC) -std=c99 -Wall -Wextra -Wpedantic -Werror -Ilib/include -c tests/headercheck.c -o $(B)/headercheck99.o
	@echo "headercheck: modelstream.h compiles on its own (C11, C99)"

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find lib cmd tests -name '*.[ch]')

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)
	@echo "format-check: ok"

style-check:
	@scripts/check-source.sh

# ---------------------------------------------------------------------------------------
# Demo, bench, fuzz

demo:
	@scripts/deps.sh demo
	$(MAKE) --no-print-directory all
	scripts/demo.sh $(B)

BENCH_ARGS ?= --hugepages 2100
bench: all $(B)/memcpy_bench
	scripts/deps.sh bench
	python3 tests/bench/run_bench.py --build $(B) $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-python

# The Python package against Run:ai, safetensors and fastsafetensors, in-process.
bench-python: python-install
	python3 -m pip install -q fastsafetensors 2>/dev/null || true
	python3 tests/bench/python_bench.py --build $(B)

$(B)/memcpy_bench: tests/bench/memcpy_bench.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread -o $@ $<

FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := header s3_xml aws_config creds_json config
# The header parser's corpus predates the others' naming.
fuzz_corpus   = $(if $(filter header,$(1)),tests/fuzz/corpus,tests/fuzz/corpus_$(1))

$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_SRC) $(LIB_HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) -g -O1 -std=c11 $(CPPFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ $< $(LIB_SRC) $(LIB_LIBS) -pthread

# The configuration loader needs only the allocation front end of the library.
$(B)/fuzz_config: tests/fuzz/fuzz_config.c cmd/modelstream/config.c cmd/modelstream/config.h \
                  lib/alloc.c lib/alloc.h
	@mkdir -p $(@D)
	$(FUZZ_CC) -g -O1 -std=c11 $(CPPFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ tests/fuzz/fuzz_config.c cmd/modelstream/config.c lib/alloc.c -lyaml -lcjson -pthread

# Replays every seed corpus (regressions included) through its fuzz target, without
# fuzzing: part of `make test` wherever clang's libFuzzer is installed.
fuzz-regress:
	@if ! $(FUZZ_CC) --version >/dev/null 2>&1; then \
	  echo "fuzz-regress: skipped (no clang; scripts/deps.sh fuzz installs it)"; exit 0; fi; \
	mkdir -p $(B); printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > $(B)/fuzz_probe.c; \
	if ! $(FUZZ_CC) -fsanitize=fuzzer $(B)/fuzz_probe.c -o $(B)/fuzz_probe >/dev/null 2>&1; then \
	  echo "fuzz-regress: skipped (no libFuzzer runtime; scripts/deps.sh fuzz installs it)"; exit 0; fi; \
	for t in $(FUZZ_TARGETS); do \
	  [ -f tests/fuzz/fuzz_$$t.c ] || continue; \
	  $(MAKE) --no-print-directory $(B)/fuzz_$$t > $(B)/fuzz_$$t.build.log 2>&1 || \
	    { tail -n 20 $(B)/fuzz_$$t.build.log; echo "fuzz-regress: $$t does not build"; exit 1; }; \
	  corpus=$$( [ $$t = header ] && echo tests/fuzz/corpus || echo tests/fuzz/corpus_$$t ); \
	  $(B)/fuzz_$$t -runs=0 $$corpus > $(B)/fuzz_$$t.replay.log 2>&1 || \
	    { tail -n 20 $(B)/fuzz_$$t.replay.log; echo "fuzz-regress: $$t FAILED"; exit 1; }; \
	  echo "fuzz-regress: $$t: $$(ls $$corpus | wc -l) corpus inputs replayed"; \
	done

# Fuzzes one target (FUZZ=header|s3_xml|aws_config|creds_json|config) for FUZZ_SECONDS, growing a copy
# of its corpus under $(B).
FUZZ ?= header
fuzz: $(B)/fuzz_$(FUZZ)
	@mkdir -p $(B)/fuzz-corpus-$(FUZZ)
	$(B)/fuzz_$(FUZZ) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	  $(if $(wildcard tests/fuzz/$(FUZZ).dict),-dict=tests/fuzz/$(FUZZ).dict) \
	  $(B)/fuzz-corpus-$(FUZZ) $(call fuzz_corpus,$(FUZZ))

# ---------------------------------------------------------------------------------------
# Install

install: all
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 lib/include/modelstream.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libmodelstream.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libmodelstream.so
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' modelstream.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/modelstream.pc
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/

# Installs into a scratch prefix and builds the example against it with pkg-config, the
# way a user would, both dynamically and statically.
install-check: all
	rm -rf $(B)/install-check
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(B)/install-check) >/dev/null
	export PKG_CONFIG_PATH=$(abspath $(B)/install-check)/lib/pkgconfig; \
	$(CC) -std=c11 -Wall -Wextra -Werror examples/stream_tensors.c $$(pkg-config --cflags --libs modelstream) \
	  -Wl,-rpath,$(abspath $(B)/install-check)/lib -o $(B)/install-check/stream_tensors && \
	$(CC) -std=c11 -Wall -Wextra -Werror -static-libgcc examples/stream_tensors.c \
	  $$(pkg-config --cflags modelstream) $(abspath $(B)/install-check)/lib/libmodelstream.a \
	  $$(pkg-config --static --libs-only-l modelstream | sed 's/-lmodelstream//') -o $(B)/install-check/stream_tensors_static
	$(MKMODEL) --small-count 50 --large-count 1 --large-bytes 1M $(B)/install-check/m.safetensors >/dev/null
	$(B)/install-check/stream_tensors $(B)/install-check/m.safetensors | tail -n 1
	$(B)/install-check/stream_tensors_static $(B)/install-check/m.safetensors | tail -n 1
	@echo "install-check: ok (pkg-config, shared and static)"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/modelstream.h $(DESTDIR)$(PREFIX)/lib/libmodelstream.* \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/modelstream.pc $(DESTDIR)$(PREFIX)/bin/modelstream

clean:
	rm -rf build build-*

# The Helm chart's checks and the manifests rendered from it; the container image.
include tests/k8s/Makefile.inc
include tests/image.mk

-include $(wildcard $(B)/*/*.d)
.SECONDARY:
