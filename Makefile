# settrain build.
#   make            build build/settrain (CPU backend; the GPU backend too when nvcc is found)
#   make test       build and run the whole test suite (what CI runs)
#   make clean
# Variables: CC, CPU_ARCH (-march value, default native), CUDA_ARCH (list of sm_XX),
#            NVCC (path; set NVCC= to build without CUDA), OMP (set OMP= to build without OpenMP).

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
# -Wno-psabi: the static batch-vector helpers in cpu_ops.c never cross an ABI boundary.
CFLAGS  += -std=gnu99 -Wall -Wextra -Wno-psabi -Iinclude $(HDF5_CFLAGS) $(OMP) -DST_GIT_COMMIT=\"$(GIT_COMMIT)\"
LDLIBS  += $(HDF5_LIBS) -lmatio -lz -lm $(OMP)

SRC      := $(wildcard src/*.c)
OBJ      := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(SRC))
LIB_OBJ  := $(filter-out $(BUILD)/obj/main.o,$(OBJ))
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

.PHONY: all test clean deps-report
all: deps-report $(BUILD)/settrain

deps-report:
	@if [ -n "$(HDF5_LIBS)" ] && printf '#include <hdf5.h>\n' | $(CC) $(HDF5_CFLAGS) -E -x c - >/dev/null 2>&1; then echo "✓ HDF5"; else echo "✗ HDF5 (apt-get install libhdf5-dev)"; fi
	@if printf '#include <matio.h>\n' | $(CC) -E -x c - >/dev/null 2>&1; then echo "✓ matio"; else echo "✗ matio (apt-get install libmatio-dev)"; fi
	@if [ "$(HAVE_CUDA)" = 1 ]; then echo "✓ CUDA ($(NVCC), $(CUDA_ARCH) + PTX): GPU backend built"; else echo "✗ CUDA: building the CPU backend only"; fi

$(BUILD)/settrain: $(OBJ) $(if $(HAVE_CUDA),$(CU_OBJ))
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: src/%.c $(wildcard include/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/cu_%.o: kernels/%.cu $(wildcard include/*.h) | $(BUILD)/obj
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/%.c tests/harness.h $(LIB_OBJ) | $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB_OBJ) $(LDLIBS)

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

# Runs every test binary (each prints "N passed, N failed"), then the shell
# tests, and prints the total; fails when any test failed.
test: $(BUILD)/settrain $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run_all.sh $(TEST_BIN)

clean:
	rm -rf $(BUILD)
