#!/usr/bin/env bash
# tests/gpu/run.sh - the GPU check in one call, sized to take under 8 minutes, on a machine with an
# NVIDIA GPU (the device tool's: `run` with carry=["gpu-carry"], command
# "bash tests/gpu/run.sh").
#
#  1. says what the machine is: GPU, driver, kernel, virtualization (gVisor and Firecracker
#     limit pinning and mounts), huge pages, whether tmpfs can be mounted;
#  2. builds (make gpu-tools), or, where the image lacks our -dev packages, uses the build
#     carried in gpu-carry/ (scripts/gpu_carry.sh makes it: binaries, their libraries, and
#     the peers' wheels);
#  3. correctness: build/tests/gpu/gpu_check (every byte of every tensor, several files,
#     dtypes, odd sizes and offsets, alignments, memory limits, the caller's buffers, every
#     device), and `stream --checksum` on the GPU equal to the host path's;
#  4. figures, best of 3, on one model file (8 GiB; MS_GPU_MODEL_GIB to change): the
#     pinned cuMemcpyHtoD peak and the pageable rate (pcie_bench), modelstream from the page
#     cache (registered mappings), from a tmpfs huge=within_size cache (registered), and
#     through the pinned staging ring; then the peers on the same file
#     (safetensors.torch.load_file, Run:ai's SafetensorsStreamer with .to(), fastsafetensors
#     nogds) and the ratios against the targets;
#  5. the Python package: its pytest tests (tests/python, test_gpu.py among them) and its
#     bench rows (tests/bench/python_bench.py) on cuda:0.
#
# --rehearse runs every step here, without a GPU, against the stand-in driver
# (build/tests/libfakecuda.so) on a small file: the figures then mean nothing, the steps
# and the parsing are what is checked. Exit status: 0 when every correctness check passed
# (targets are reported, never asserted), 1 otherwise.
set -u
cd "$(dirname "$0")/../.." || exit 1
repo=$PWD
rehearse=0
[ "${1:-}" = "--rehearse" ] && rehearse=1
start=$(date +%s)
say() { echo "$*"; }
section() { echo; echo "== $* (+$(($(date +%s) - start)) s)"; }
failures=0
passes=0
work=$(mktemp -d "${MS_GPU_WORK:-$repo}/.gpu-run-XXXXXX")
tmpfs_dir=""
cleanup() {
  [ -n "$tmpfs_dir" ] && umount "$tmpfs_dir" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# -- 1. the machine --------------------------------------------------------------------
section "the machine"
say "kernel: $(uname -srm); $(nproc) CPUs; $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
if grep -qi gvisor /proc/version 2>/dev/null || dmesg 2>/dev/null | grep -qi gvisor ||
  [ "$(uname -r)" = 4.4.0 ]; then
  say "virtualization: gVisor, it seems (kernel $(uname -r)): registering file mappings, huge pages and mounts may be refused; each step below says which path it took"
elif uname -r | grep -q -- '-fc-' || dmesg 2>/dev/null | grep -qi firecracker; then
  say "virtualization: Firecracker, it seems (kernel $(uname -r))"
elif grep -q "^flags.*hypervisor" /proc/cpuinfo; then
  say "virtualization: a hypervisor ($(systemd-detect-virt 2>/dev/null || cat /sys/class/dmi/id/product_name 2>/dev/null || echo unknown))"
else
  say "virtualization: none seen"
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
else
  say "gpu: no nvidia-smi"
fi
say "huge pages: $(cat /proc/sys/vm/nr_hugepages) reserved, THP $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"

if [ $rehearse -eq 1 ]; then
  say "REHEARSAL: the stand-in driver, a small file; the figures below mean nothing"
fi

# -- 2. build ----------------------------------------------------------------------------
section "build"
B=build
ours=(env)
if make -s -j"$(nproc)" gpu-tools >"$work/make.log" 2>&1; then
  say "built: $B/modelstream, $B/tests/gpu/gpu_check, $B/tests/gpu/pcie_bench"
  gpu_check=$B/tests/gpu/gpu_check pcie_bench=$B/tests/gpu/pcie_bench
elif [ -x gpu-carry/bin/modelstream ]; then
  say "make gpu-tools failed here ($(grep -m1 -E 'error|No such file|not found' "$work/make.log")); using the build carried in gpu-carry/ ($(cat gpu-carry/BUILT 2>/dev/null))"
  B=$repo/gpu-carry/bin
  # Our binaries alone find the carried libraries: torch and the peers keep the machine's.
  ours=(env "LD_LIBRARY_PATH=$repo/gpu-carry/lib")
  gpu_check=$B/gpu_check pcie_bench=$B/pcie_bench
else
  tail -20 "$work/make.log"
  say "not ok - the build: make gpu-tools failed and nothing is carried in gpu-carry/"
  exit 1
fi
cli=$B/modelstream
mkmodel=$B/mkmodel
"${ours[@]}" "$cli" --version || exit 1
if [ $rehearse -eq 1 ]; then
  export MODELSTREAM_CUDA_DRIVER=$repo/build/tests/libfakecuda.so FAKE_CUDA_MEMORY=$((6 << 30))
fi

# -- 3. correctness ----------------------------------------------------------------------
section "correctness"
mkdir -p "$work/check"
"${ours[@]}" "$gpu_check" "$work/check" | tee "$work/check.log"
counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/check.log" | tail -1)
passes=$((passes + ${counts%% passed*}))
failures=$((failures + $(awk '{print $3}' <<<"${counts:-0 passed, 1 failed}")))
"${ours[@]}" "$mkmodel" --seed 9 --small-count 3000 --small-max-bytes 100K --large-count 4 --large-bytes 33M \
  "$work/check/m.safetensors" >/dev/null
"${ours[@]}" "$cli" stream --checksum --quiet "$work/check/m.safetensors" >"$work/host.sums"
for flags in "" "--memory-limit 64M" "--deliver mapped"; do
  # shellcheck disable=SC2086 # split on purpose
  if "${ours[@]}" "$cli" stream --checksum --quiet --device cuda:0 $flags "$work/check/m.safetensors" >"$work/dev.sums" &&
    cmp -s "$work/host.sums" "$work/dev.sums"; then
    say "ok - stream --device cuda:0 ${flags:-(staged)} --checksum equals the host path's ($(wc -l <"$work/host.sums") tensors)"
    passes=$((passes + 1))
  else
    say "not ok - stream --device cuda:0 ${flags:-(staged)} --checksum differs from the host path's"
    failures=$((failures + 1))
  fi
done
"${ours[@]}" "$cli" stream --verbose --device cuda:0 --deliver mapped "$work/check/m.safetensors" 2>&1 | sed 's/^/  /'
rm -rf "$work/check"

# -- 4. figures --------------------------------------------------------------------------
section "figures"
gib=${MS_GPU_MODEL_GIB:-8}
[ $rehearse -eq 1 ] && gib=1
file=$work/model.safetensors
"${ours[@]}" "$mkmodel" --seed 4 --small-count 3000 --small-max-bytes 256K --large-count $((gib * 8)) \
  --large-bytes 112M "$file" | sed 's/^/model: /'
bytes=$(stat -c %s "$file")

# Best GB/s of 3 runs of the command's JSON summary ("" if a run failed); the copy path
# the last run took goes to $work/path.
best_of_3() {
  local best="" g
  for _ in 1 2 3; do
    g=$("$@" 2>"$work/err" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["gbps"]); m = r["device_copy"] == "mapped"; open(sys.argv[1], "w").write(r["device_copy"] + (", pinning %.3f s of %.3f" % (r["pin_seconds"], r["seconds"]) if m else ""))' "$work/path" 2>/dev/null) ||
      { sed 's/^/  stderr: /' "$work/err" | head -3 >&2; echo ""; return; }
    best=$(python3 -c "print(max(float('$g'), float('${best:-0}')))")
  done
  echo "$best"
}
declare -A path

declare -A row
"${ours[@]}" "$pcie_bench" 0 1024 >"$work/pcie.json" 2>"$work/err" || sed 's/^/  pcie_bench: /' "$work/err"
row[pinned_peak]=$(python3 -c 'import json,sys; print(next(json.loads(l)["gbps"] for l in open(sys.argv[1]) if "pinned" in l))' "$work/pcie.json" 2>/dev/null)
row[pageable]=$(python3 -c 'import json,sys; print(next(json.loads(l)["gbps"] for l in open(sys.argv[1]) if "pageable" in l))' "$work/pcie.json" 2>/dev/null)

cat "$file" >/dev/null # hot in the page cache
row[page_cache]=$(best_of_3 "${ours[@]}" "$cli" stream --json --device cuda:0 --deliver mapped "$file")
path[page_cache]=$(cat "$work/path" 2>/dev/null)
row[staging]=$(best_of_3 "${ours[@]}" "$cli" stream --json --device cuda:0 --deliver copy "$file")
path[staging]=$(cat "$work/path" 2>/dev/null)
tmpfs_dir=$work/tmpfs
mkdir -p "$tmpfs_dir"
if mount -t tmpfs -o "size=$((bytes / 1048576 + 128))m,huge=within_size" tmpfs "$tmpfs_dir" 2>"$work/err" ||
  { say "tmpfs: huge=within_size refused ($(cat "$work/err")); mounting it with small pages" &&
    mount -t tmpfs -o "size=$((bytes / 1048576 + 128))m" tmpfs "$tmpfs_dir" 2>"$work/err"; }; then
  # As the node cache holds it: `modelstream fetch` sets the size before writing, which is
  # what gets a file huge pages on tmpfs (a plain cp would get small ones).
  "$cli" fetch "$file" --cache "$tmpfs_dir" --name bench >/dev/null 2>"$work/err" ||
    say "tmpfs: fetch failed: $(tail -1 "$work/err")"
  row[tmpfs]=$(best_of_3 "${ours[@]}" "$cli" stream --json --device cuda:0 --deliver mapped "$tmpfs_dir/models/bench/model.safetensors")
  path[tmpfs]=$(cat "$work/path" 2>/dev/null)
  say "tmpfs: $(grep -m1 " $tmpfs_dir " /proc/self/mountinfo | awk '{print $NF}'); AnonHugePages/ShmemHugePages: $(awk '/ShmemHugePages/ {print $2 " kB"}' /proc/meminfo)"
else
  tmpfs_dir=""
  say "tmpfs: cannot mount ($(cat "$work/err")): the node-cache row is skipped"
fi

# The peers, each in a process of its own, from the same hot file. Run:ai and
# fastsafetensors come from the wheels carried in gpu-carry/wheels where pip cannot reach
# an index.
pydir=$work/py
if [ -d gpu-carry/wheels ] && [ $rehearse -eq 0 ]; then
  # The machine's own numpy if it has one (torch was built against it).
  wheels=()
  for w in gpu-carry/wheels/*.whl; do
    case $w in */numpy-*) python3 -c 'import numpy' 2>/dev/null && continue ;; esac
    wheels+=("$w")
  done
  for w in "${wheels[@]}"; do # one at a time: a wheel this Python cannot take skips alone
    python3 -m pip install -q --no-index --no-deps --target "$pydir" "$w" 2>&1 | tail -1
  done
  say "peers: $(PYTHONPATH=$pydir python3 -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("torch", "safetensors", "runai-model-streamer", "fastsafetensors", "numpy")))' 2>&1 | tail -1)"
fi
for peer in safetensors runai fastsafetensors; do
  if [ $rehearse -eq 1 ]; then row[$peer]=""; continue; fi
  best=""
  for _ in 1 2; do
    cat "$file" >/dev/null
    line=$(PYTHONPATH=$pydir${PYTHONPATH:+:$PYTHONPATH} timeout 120 python3 tests/gpu/peers.py "$file" --which "$peer" --device cuda:0)
    g=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get("gbps", ""))' "$line" 2>/dev/null)
    [ -z "$g" ] && { say "  $peer: $line"; break; }
    best=$(python3 -c "print(max(float('$g'), float('${best:-0}')))")
  done
  row[$peer]=$best
done

section "results ($bytes bytes, to cuda:0, best of 3; GB/s = 10^9 bytes/s)"
ratio() { [ -n "${row[$1]}" ] && [ -n "${row[$2]}" ] && python3 -c "print(f'{float(\"${row[$1]}\") / float(\"${row[$2]}\"):.2f}x')" || echo "-"; }
printf '%-44s %10s %16s  %s\n' "row" "GB/s" "vs pinned peak" "copy path"
for r in pinned_peak pageable page_cache tmpfs staging safetensors runai fastsafetensors; do
  printf '%-44s %10s %16s  %s\n' "$(case $r in
    pinned_peak) echo "cuMemcpyHtoD from pinned memory (the limit)";;
    pageable) echo "cuMemcpyHtoD from pageable memory";;
    page_cache) echo "modelstream, page cache, registered";;
    tmpfs) echo "modelstream, tmpfs huge=within_size cache";;
    staging) echo "modelstream, pinned staging ring";;
    safetensors) echo "safetensors.torch.load_file(device=)";;
    runai) echo "Run:ai SafetensorsStreamer + .to()";;
    fastsafetensors) echo "fastsafetensors (nogds)";;
    esac)" "${row[$r]:--}" "$(ratio "$r" pinned_peak)" "${path[$r]:-}"
done
say
say "targets: tmpfs >= 0.9x the peak ($(ratio tmpfs pinned_peak)); page cache >= 0.75x ($(ratio page_cache pinned_peak));"
best_ms=$(python3 -c "print(max(float(x) for x in '${row[page_cache]:-0} ${row[tmpfs]:-0} ${row[staging]:-0}'.split()))")
row[modelstream_best]=$best_ms
say "         >= 3x Run:ai ($(ratio modelstream_best runai)); >= 1.5x fastsafetensors ($(ratio modelstream_best fastsafetensors)); vs safetensors $(ratio modelstream_best safetensors)"

# -- 5. the Python package ----------------------------------------------------------------
# Its tests (tests/python; test_gpu.py is the part that needs the GPU: every tensor on
# cuda:0 through each copy path against safetensors.torch, held tensors under a small ring)
# and its bench rows against the peers, in-process, on cuda:0. The package is the wheel
# scripts/gpu_carry.sh carries (py3-none: any Python 3), or the one `make wheel` builds.
section "python"
wheel=$(ls gpu-carry/wheels/modelstream-*.whl 2>/dev/null | head -1)
if [ -z "$wheel" ] && make -s wheel >"$work/wheel.log" 2>&1; then
  wheel=$(ls build/wheels/modelstream-*.whl 2>/dev/null | head -1)
fi
if [ -z "$wheel" ]; then
  say "not ok - the Python package: no wheel carried and make wheel failed"
  failures=$((failures + 1))
else
  python3 -m pip install -q --no-index --no-deps --target "$pydir" "$wheel" 2>&1 | tail -1
  py=("${ours[@]}" "PYTHONPATH=$pydir${PYTHONPATH:+:$PYTHONPATH}" PIP_NO_INDEX=1 PYTHONUNBUFFERED=1)
  tests=.
  [ $rehearse -eq 1 ] && tests=test_gpu.py # make python-tests runs the rest
  build_dir=$(cd "$B" && pwd)
  (cd tests/python && "${py[@]}" MODELSTREAM_BUILD="$build_dir" \
    timeout 300 python3 -m pytest -q -p no:cacheprovider -rs "$tests" 2>&1) |
    tee "$work/pytest.log" | tail -25
  counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/pytest.log" | tail -1)
  if [ -z "$counts" ]; then
    say "not ok - the Python tests printed no result"
    failures=$((failures + 1))
  else
    passes=$((passes + ${counts%% passed*}))
    failures=$((failures + $(awk '{print $3}' <<<"$counts")))
  fi
  if [ $rehearse -eq 1 ]; then
    bench=(--device cpu --gib 1 --repeat 1)
  else
    bench=(--device cuda:0 --gib "${MS_GPU_PY_GIB:-2}" --repeat 2)
  fi
  "${py[@]}" timeout 300 python3 tests/bench/python_bench.py --build "$B" "${bench[@]}" 2>&1 |
    tail -14 || true
fi
say
say "gpu run: $(($(date +%s) - start)) s"
say "$passes passed, $failures failed"
[ $failures -eq 0 ] && [ $passes -gt 0 ]
