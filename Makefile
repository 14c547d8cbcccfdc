# settrain build.
#   make            build build/settrain (CPU backend; the GPU backend too when nvcc is found)
#   make test       build and run the whole test suite (what CI runs)
#   make gpu-bundle build gpubundle/, everything the first GPU check needs (see below)
#   make clean
# Variables: CC, CPU_ARCH (-march value, default native), CUDA_ARCH (list of sm_XX),
#            NVCC (path; set NVCC= to build without CUDA), OMP (set OMP= to build without OpenMP),
#            BUNDLE (1: link with an RPATH of $ORIGIN/../lib, for gpu-bundle).

CC       ?= gcc
CPU_ARCH ?= native
OMP      ?= -fopenmp
BUILD    ?= build
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)

HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs hdf5 2>/dev/null)
ifeq ($(HDF5_LIBS),)
HDF5_CFLAGS := -I/usr/include/hdf5/serial
HDF5_LIBS   := -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5
endif

CFLAGS  ?= -O3 -march=$(CPU_ARCH) -g
# -Wno-psabi: the static batch-vector helpers in src/cpu/cpu_ops.c never cross an ABI boundary.
CFLAGS  += -std=gnu99 -Wall -Wextra -Wno-psabi -Iinclude $(HDF5_CFLAGS) $(OMP) -DST_GIT_COMMIT=\"$(GIT_COMMIT)\"
LDLIBS  += $(HDF5_LIBS) -lmatio -lz -lm $(OMP)

# MPI (optional; src/dist/dist.c): found with pkg-config's mpi-c or mpicc --showme.
# MPI= builds without it; the GPU bundle (BUNDLE=1) never links it, so that it
# runs on machines without MPI libraries.
MPI ?= auto
ifeq ($(BUNDLE),1)
MPI :=
endif
ifneq ($(strip $(MPI)),)
MPI_CFLAGS := $(shell pkg-config --cflags mpi-c 2>/dev/null || mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs mpi-c 2>/dev/null || mpicc --showme:link 2>/dev/null)
ifneq ($(strip $(MPI_LIBS)),)
HAVE_MPI := 1
CFLAGS   += -DST_HAVE_MPI $(MPI_CFLAGS)
LDLIBS   += $(MPI_LIBS)
endif
endif
# Binaries that travel in the GPU bundle find its lib/ (libmatio, libgomp)
# first; DT_RPATH (not RUNPATH) so that libmatio's own needs are searched
# there too.
ifeq ($(BUNDLE),1)
LDLIBS  += -Wl,--disable-new-dtags -Wl,-rpath,'$$ORIGIN/../lib'
endif

# src/ has one folder per concern (README "Layout"); include/ mirrors it.
SRC      := $(wildcard src/*/*.c)
OBJ      := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRC))
LIB_OBJ  := $(filter-out $(BUILD)/obj/cli/main.o,$(OBJ))
HEADERS  := $(wildcard include/*.h include/*/*.h)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

# --- CUDA (optional) --------------------------------------------------------
NVCC      ?= $(shell command -v nvcc 2>/dev/null || (test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc))
CUDA_HOME ?= /usr/local/cuda
CUDA_ARCH ?= sm_80 sm_86 sm_89 sm_90
CU_SRC    := $(wildcard kernels/*.cu)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CU_SRC)),)
HAVE_CUDA := 1
endif
endif
ifeq ($(HAVE_CUDA),1)
LAST_ARCH   := $(lastword $(CUDA_ARCH))
NVCC_GENCODE := $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(subst sm_,,$(a)),code=$(a)) \
                -gencode arch=compute_$(subst sm_,,$(LAST_ARCH)),code=compute_$(subst sm_,,$(LAST_ARCH))
NVCCFLAGS ?= -O3 -lineinfo
NVCCFLAGS += -std=c++17 -Iinclude $(NVCC_GENCODE) -Xcompiler -Wall,-Wextra -DDISABLE_CUSPARSE_DEPRECATED
CU_OBJ    := $(patsubst kernels/%.cu,$(BUILD)/obj/cu_%.o,$(CU_SRC))
CFLAGS    += -DST_HAVE_CUDA -I$(CUDA_HOME)/include -DDISABLE_CUSPARSE_DEPRECATED
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcusparse -lcublas -lcudart -lstdc++
LIB_OBJ   += $(CU_OBJ)
endif

# Objects are rebuilt when the build configuration changes (say `make` after
# `make NVCC=`), and the two that print the git commit when it changes.
CONFIG_STAMP := $(BUILD)/obj/.config
CONFIG_TEXT  := $(CC) $(filter-out -DST_GIT_COMMIT=%,$(CFLAGS)) cuda=$(HAVE_CUDA) $(NVCCFLAGS)
COMMIT_STAMP := $(BUILD)/obj/.commit
$(shell mkdir -p $(BUILD)/obj; \
    echo '$(CONFIG_TEXT)' | cmp -s - $(CONFIG_STAMP) || echo '$(CONFIG_TEXT)' > $(CONFIG_STAMP); \
    echo '$(GIT_COMMIT)' | cmp -s - $(COMMIT_STAMP) || echo '$(GIT_COMMIT)' > $(COMMIT_STAMP))

.PHONY: all test clean deps-report
all: deps-report $(BUILD)/settrain

$(BUILD)/obj/cli/main.o $(BUILD)/obj/train/train.o: $(COMMIT_STAMP)

deps-report:
	@if [ -n "$(HDF5_LIBS)" ] && printf '#include <hdf5.h>\n' | $(CC) $(HDF5_CFLAGS) -E -x c - >/dev/null 2>&1; then echo "✓ HDF5"; else echo "✗ HDF5 (apt-get install libhdf5-dev)"; fi
	@if printf '#include <matio.h>\n' | $(CC) -E -x c - >/dev/null 2>&1; then echo "✓ matio"; else echo "✗ matio (apt-get install libmatio-dev)"; fi
	@if [ "$(HAVE_MPI)" = 1 ]; then echo "✓ MPI: data-parallel training (mpirun -np N settrain train ...)"; else echo "✗ MPI (apt-get install libopenmpi-dev): one process per run"; fi
	@if [ "$(HAVE_CUDA)" = 1 ]; then echo "✓ CUDA ($(NVCC), $(CUDA_ARCH) + PTX): GPU backend built"; else echo "✗ CUDA: building the CPU backend only"; fi

$(BUILD)/settrain: $(OBJ) $(if $(HAVE_CUDA),$(CU_OBJ))
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: src/%.c $(HEADERS) $(CONFIG_STAMP) | $(BUILD)/obj
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/cu_%.o: kernels/%.cu $(HEADERS) $(CONFIG_STAMP) | $(BUILD)/obj
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c tests/harness.h tests/test_rng.h $(LIB_OBJ) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB_OBJ) $(LDLIBS)

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

# Runs every test binary (each prints "N passed, N failed"), then the shell
# tests, and prints the total; fails when any test failed.
test: $(BUILD)/settrain $(TEST_BIN)
	@BUILD=$(BUILD) ST_HAVE_CUDA=$(HAVE_CUDA) sh tests/run_all.sh $(TEST_BIN)

clean:
	rm -rf $(BUILD)

# --- fuzzing (make fuzz) ------------------------------------------------------
# Builds one libFuzzer binary per data reader with clang (-fsanitize=fuzzer,
# address,undefined) into FUZZ_BUILD, writes the seed corpora
# (tests/fuzz/make_seeds.c) and runs each target for FUZZ_SECONDS, one after
# another (tests/fuzz/run_fuzz.sh), printing executions and findings. A new
# crash, leak, hang or out-of-memory input in settrain's code is copied into
# tests/fuzz_regressions/<target>/, which `make test` replays
# (tests/test_fuzz_replay.c), and fails the run; one inside libhdf5 or matio
# goes to tests/fuzz_regressions/library/ and is only reported. Needs clang
# and libclang-rt-14-dev (scripts/install_deps.sh installs both). FUZZ_ARGS
# adds libFuzzer options (e.g. FUZZ_ARGS=-max_len=65536).
# `make fuzz-build` builds the binaries and the seeds without fuzzing;
# `make test` checks that it works (tests/test_fuzz_build.sh).
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_ARGS    ?=
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := -O1 -g -std=gnu99 -Wall -Wextra -Iinclude -Itests/fuzz $(HDF5_CFLAGS) $(FUZZ_SAN) \
                -DST_GIT_COMMIT=\"$(GIT_COMMIT)\"
FUZZ_LIBS    := $(HDF5_LIBS) -lmatio -lz -lm
# The sources every target links: the readers and what they call. The table
# of targets (tests/fuzz/targets.h) names every reader, the checkpoint's
# too, so each binary links all of them: checkpoint.c and what it calls
# (model.c, config.c, and the run-folder and output-file helpers).
FUZZ_LIB_SRC := src/util/common.c src/data/data_h5.c src/data/data_idx.c src/data/data_mat.c \
                src/util/h5util.c src/train/checkpoint.c src/model/model.c src/train/config.c \
                src/train/rundir.c src/util/outfile.c
FUZZ_LIB_OBJ  = $(patsubst src/%.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC))
FUZZ_NAMES   := h5 idx_gz idx_images idx_labels mat checkpoint
FUZZ_BINS    := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))

# One binary per target: $(FUZZ_BUILD)/fuzz_<name> runs fuzz_run_<name> of
# tests/fuzz/targets.h (adding a target: a row there and a name in FUZZ_NAMES).
$(FUZZ_BINS): $(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_main.c tests/fuzz/targets.h $(FUZZ_LIB_OBJ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_TARGET=\"$*\" -o $@ $< \
	    $(FUZZ_LIB_OBJ) $(FUZZ_LIBS)

$(FUZZ_BUILD)/obj/%.o: src/%.c $(HEADERS) | $(FUZZ_BUILD)/obj
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/make_seeds: tests/fuzz/make_seeds.c $(FUZZ_LIB_OBJ) | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -o $@ $^ $(FUZZ_LIBS)

$(FUZZ_BUILD)/obj:
	mkdir -p $@

.PHONY: fuzz fuzz-build sanitize
fuzz-build: $(FUZZ_BUILD)/make_seeds $(FUZZ_BINS)

fuzz: fuzz-build
	@rm -rf $(FUZZ_BUILD)/seeds && $(FUZZ_BUILD)/make_seeds $(FUZZ_BUILD)/seeds
	@sh tests/fuzz/run_fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_NAMES)

# --- sanitizers (make sanitize) -----------------------------------------------
# Builds the project and every test with AddressSanitizer (leaks included) and
# UndefinedBehaviorSanitizer into SAN_BUILD and runs the whole test suite
# there; any report fails the run. Sanitizer reports exit with 86, so a shell
# test that expects settrain's exit code 1 cannot mistake one for an error
# it provoked; protect_shadow_gap=0 lets a CUDA build run under ASan.
SAN_BUILD  ?= $(BUILD)/san
SAN_CFLAGS ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
sanitize:
	CFLAGS='$(SAN_CFLAGS)' \
	ASAN_OPTIONS=detect_leaks=1:exitcode=86:protect_shadow_gap=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86 \
	    $(MAKE) BUILD=$(SAN_BUILD) test

# --- GPU checks (make test-gpu, bench-gpu, gpu-bundle, gpu-check) -------------
# test-gpu    the GPU tests alone (tests/test_gpu.c; also part of `make test`;
#             the device tests skip with a message where no GPU is present).
# bench-gpu   tests/bench_gpu.c: training seconds per epoch on Fashion-MNIST per
#             motif beside the all-dense cuBLAS network, and the kernel harness;
#             BENCH_ARGS adds options (e.g. BENCH_ARGS=--short, --help).
# gpu-bundle  builds, on any machine with nvcc (no GPU needed), the folder
#             GPU_BUNDLE (gpubundle/, git-ignored, < 60 MiB) that a machine with
#             a GPU but no make, -dev packages or libmatio runs as it is:
#             bin/ settrain, test_gpu and bench_gpu, compiled in
#             GPU_BUNDLE_BUILD with CPU_ARCH=x86-64-v3 (no AVX-512: the CPU
#             oracle runs on any x86-64-v3 host) and CUDA_ARCH=sm_90 (+PTX),
#             the commit stamp baked in; lib/ the libraries they need that
#             such a machine lacks (libmatio, libgomp), found through an
#             RPATH of $ORIGIN/../lib; data/ lung_small.h5 (prepared from
#             SHARED_DATA/lung_small.mat) and the Fashion-MNIST IDX files
#             (FMNIST_SRC); run.sh, a copy of scripts/gpu_check.sh.
#             Objects are kept in GPU_BUNDLE_BUILD between runs.
# gpu-check   gpu-bundle, then `sh GPU_BUNDLE/run.sh` (scripts/gpu_check.sh:
#             device facts, GPU tests, compute-sanitizer, CPU-vs-GPU end to
#             end, interrupted and resumed run, short benchmark, within
#             ~540 s; one archive and one summary under ${OUT:-/tmp/gpu_check}).
#             On a lent device: the device tool's run with carry
#             ["gpubundle"] and the command `sh gpubundle/run.sh`.
BENCH_ARGS       ?=
GPU_BUNDLE       ?= gpubundle
GPU_BUNDLE_BUILD ?= $(BUILD)/bundle
SHARED_DATA      ?= ../shared/data
FMNIST_SRC       ?= /usr/share/datasets/fashion-mnist
.PHONY: test-gpu bench-gpu gpu-bundle gpu-check
test-gpu: $(BUILD)/tests/test_gpu
	$(BUILD)/tests/test_gpu

$(BUILD)/bench_gpu: tests/bench_gpu.c $(LIB_OBJ) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB_OBJ) $(LDLIBS)

bench-gpu: $(BUILD)/settrain $(BUILD)/bench_gpu
	$(BUILD)/bench_gpu $(BENCH_ARGS)

# The sub-make gets the bundle's flags on its command line (they override
# the caller's); CFLAGS from the environment is dropped so -march stays
# x86-64-v3.
gpu-bundle:
	@if [ "$(HAVE_CUDA)" != 1 ]; then echo "gpu-bundle: needs nvcc (not found, or NVCC= given)" >&2; exit 1; fi
	env -u CFLAGS $(MAKE) --no-print-directory BUILD=$(GPU_BUNDLE_BUILD) CPU_ARCH=x86-64-v3 \
	    CUDA_ARCH=sm_90 BUNDLE=1 $(GPU_BUNDLE_BUILD)/settrain $(GPU_BUNDLE_BUILD)/tests/test_gpu \
	    $(GPU_BUNDLE_BUILD)/bench_gpu
	sh scripts/gpu_bundle.sh $(GPU_BUNDLE_BUILD) $(GPU_BUNDLE) $(SHARED_DATA) $(FMNIST_SRC)

gpu-check: gpu-bundle
	sh $(GPU_BUNDLE)/run.sh
