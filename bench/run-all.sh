#!/usr/bin/env bash
# Reproduces every figure of bench/README.md on this machine.
#
#   bash bench/run-all.sh [DATA_DIR]        (default /work/bench-data; needs ~45 GB free)
#
# 1. builds; 2. the kernel table (bench/quant-throughput.js); 3. generates the full-size and
# half-depth MiniCPM-V-2_6-int4 checkpoints and the Qwen2-7B-shaped bf16 one (skipped when present);
# 4. lists every file one conversion creates (strace); 5. runs bench/run-all.js (end-to-end ratios);
# 6. deletes the generated outputs (the checkpoints stay unless CLEAN=1).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-/work/bench-data}"
mkdir -p "$DATA/out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

npx tsc -p .

echo "== kernels (one thread, ours vs ggml_quantize_chunk via koffi, same process)"
node dist/bench/quant-throughput.js --types q8_0,q4_0,q4_k,q5_k,q6_k,iq4_nl --mb 64 --reps 7

echo "== checkpoints"
[ -f "$DATA/minicpmv-int4/model.safetensors.index.json" ] || node dist/bench/gen-fullsize.js --out "$DATA/minicpmv-int4"
[ -f "$DATA/minicpmv-int4-half/model.safetensors.index.json" ] || node dist/bench/gen-fullsize.js --out "$DATA/minicpmv-int4-half" --layers 14
[ -f "$DATA/qwen2-7b-bf16/model.safetensors.index.json" ] || node dist/bench/gen-fullsize.js --qwen2-bf16 --out "$DATA/qwen2-7b-bf16"

echo "== files created by a conversion (strace: every open with O_CREAT, every rename)"
if command -v strace >/dev/null; then
  strace -f -qq -e trace=openat,rename,renameat,renameat2,unlink,unlinkat -o "$DATA/out/strace.log" \
    node bin/ggufy.js convert "$DATA/minicpmv-int4-half" --outtype Q4_K_M --threads 2 --force \
    --outfile "$DATA/out/strace-q4km.gguf" --mmproj-outfile "$DATA/out/strace-mmproj.gguf" --quiet
  grep -E 'O_CREAT|rename' "$DATA/out/strace.log" | grep -v ENOENT | sed -E 's/^[0-9]+ +//' | sort -u
  rm -f "$DATA/out/strace-q4km.gguf" "$DATA/out/strace-mmproj.gguf" "$DATA/out/strace.log"
else
  echo "(strace not installed: apt-get install strace)"
fi

echo "== end-to-end ratios"
node dist/bench/run-all.js --data "$DATA"

if [ "${CLEAN:-0}" = 1 ]; then rm -rf "$DATA/minicpmv-int4" "$DATA/minicpmv-int4-half" "$DATA/qwen2-7b-bf16"; fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
