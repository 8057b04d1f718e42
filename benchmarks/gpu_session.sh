#!/usr/bin/env bash
# The GPU checks of this project as one prepared script, sized for a 15-minute device lease.
#
# Here (the CPU machine, once per session; needs the authors' release in ../shared and, for
# vs_authors, `fetch github:Qin-lab-code/HyperLLM`):
#     bash benchmarks/gpu_session.sh prepare
#   writes the ignored folders .whl (recbole and the pure-Python packages the CUDA image lacks,
#   for Python 3.12) and .gpu (the release, the authors' code, the tag-summary embeddings of
#   benchmarks/beauty_tag_summaries.py compressed), ~40 MB together.
# There (the device tool's `run`, carry [".whl", ".gpu"], timeout_s <= 600):
#     bash benchmarks/gpu_session.sh run <commit> [stage ...]
#   stages, in the order given (default: cuda table3 vs_authors convergence), each under its own
#   time limit, results under $OUT (at most 8 files come back):
#     cuda        benchmarks/cuda_check.py: all 25 models, one step + full ranking, host syncs   (~30 s)
#     table3      reproduce_table3.py HyperLLM_HGCF on Beauty (s/epoch, seconds to best)        (~200 s)
#     vs_authors  vs_authors.py --device cuda: the authors' code and ours, 5 epochs each          (~150 s)
#     convergence figures.py --dataset beauty --semantic tag-summaries --figures convergence      (rest)
#                 (CONVERGENCE_BACKBONE=HGCH for the issue's second backbone; CONVERGENCE_SECONDS caps it)
#     frameworks  compare_frameworks.py --dataset beauty (issue 12's Beauty cells; FRAMEWORKS_BACKBONES,
#                 FRAMEWORKS_LIST, FRAMEWORKS_SECONDS choose; default HGCF x HyperLLM,KAR,RLMRecCon) (~500 s)
#     parallel    issues 12 and 14's Beauty runs, 8 processes at once on the one GPU (PARALLEL_SECONDS)
#     ml100k      compare_frameworks.py --dataset ml-100k, ML100K_LANES processes at once (issue 12's table)
#     profile     profile_step.py HyperLLM_HGCF: Eq. 16 in one chunk (the GPU default) and in 128-row
#                 chunks (the CPU's), and HGCF: where a GPU step's time goes                     (~120 s)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
mode=${1:-}
shift || true

prepare() {
  local release=../shared/data/hyperllm-official mirror=/work/.mirror/Qin-lab-code+HyperLLM/repo
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
  mkdir -p .whl .gpu
  python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
    recbole==1.2.1 geoopt==0.5.1 colorlog==4.7.2 texttable==1.7.2 thop==0.1.1.post2209072238 hyperopt==0.2.5 future
  rm -rf .gpu/hyperllm-official && cp -r "$release" .gpu/hyperllm-official
  if [ -d "$mirror" ]; then  # the authors' code without its unreleased save/ folder
    rm -rf .gpu/authors && mkdir -p .gpu/authors
    git --git-dir="$mirror" archive HEAD $(git --git-dir="$mirror" ls-tree --name-only HEAD | grep -vx save | grep -vx data | grep -vx log) \
      | tar -x -C .gpu/authors
  fi
  local work=${TAG_INPUTS:-/tmp/gpu-session-inputs}  # TAG_INPUTS: a workdir where they were made before
  [ -f "$work/Amazon_Beauty/Amazon_Beauty.useremb" ] ||
    python benchmarks/beauty_tag_summaries.py --data "$release" --workdir "$work" --inputs-only
  tar -C "$work/Amazon_Beauty" -cf - Amazon_Beauty.useremb Amazon_Beauty.itememb | xz -1 -T0 > .gpu/tag-summary-embeddings.tar.xz
  local splits=${ML100K_WORKDIR:-/tmp/fw-ml100k}  # compare_frameworks.py's ml-100k inputs, made here (MiniLM)
  if ls -d "$splits"/split*/ml-100k >/dev/null 2>&1; then
    (cd "$splits" && tar --exclude=vectors.sqlite -cf - split*/ml-100k) | xz -1 -T0 > .gpu/ml100k-splits.tar.xz
  fi
  du -sh .whl .gpu
}

stage_cuda() { timeout 90 python3 benchmarks/cuda_check.py --out "$OUT/cuda_check.json"; }
stage_table3() {
  timeout 260 python3 benchmarks/reproduce_table3.py --data .gpu/hyperllm-official --workdir /tmp/beauty \
    --out "$OUT/table3_gpu.json" --models HyperLLM_HGCF
}
stage_vs_authors() {
  [ -f .gpu/authors/main.py ] || { echo "no .gpu/authors"; return 0; }
  timeout 200 python3 benchmarks/vs_authors.py --device cuda --authors .gpu/authors --authors-commit 3cb1fa5 \
    --data .gpu/hyperllm-official --epochs 5 --rounds 1 --out "$OUT/vs_authors_gpu.json"
}
tag_summary_inputs() {  # the release as atomic files in $1, with the MiniLM tag-summary embeddings beside them
  mkdir -p "$1"
  python3 -c "import sys; sys.path.insert(0, 'benchmarks'); from reproduce_table3 import convert; convert('.gpu/hyperllm-official', '$1')"
  xz -dc .gpu/tag-summary-embeddings.tar.xz | tar -x -C "$1/Amazon_Beauty"
}
stage_convergence() {  # CONVERGENCE_OUT: a figures folder of this repo whose recorded runs are kept (e.g.
  # benchmarks/results/figures_beauty/tag_summaries_hgch with CONVERGENCE_ONLY="w/o Meta"): it comes back as
  # convergence.tar.gz; unpack it elsewhere and add its new runs here with figures.update_runs (unpacking over
  # the folder would drop runs recorded here meanwhile)
  local work=/tmp/beauty-tags out=${CONVERGENCE_OUT:-$OUT/convergence}
  tag_summary_inputs "$work"
  timeout "${CONVERGENCE_SECONDS:-400}" python3 benchmarks/figures.py --dataset beauty --semantic tag-summaries \
    --figures convergence --backbone "${CONVERGENCE_BACKBONE:-HGCF}" --data .gpu/hyperllm-official \
    --workdir "$work" --out "$out" ${CONVERGENCE_ONLY:+--only "$CONVERGENCE_ONLY"}
  [ "$out" = "$OUT/convergence" ] || tar -czf "$OUT/convergence.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
}

stage_frameworks() {  # each finished cell is in the JSON at once: a stage cut by its time limit keeps them
  local work=/tmp/beauty-tags
  tag_summary_inputs "$work"
  timeout "${FRAMEWORKS_SECONDS:-500}" python3 benchmarks/compare_frameworks.py --dataset beauty --seeds 1234 \
    --backbones "${FRAMEWORKS_BACKBONES:-HGCF}" --frameworks "${FRAMEWORKS_LIST:-HyperLLM,KAR,RLMRecCon}" \
    --data .gpu/hyperllm-official --workdir "$work" --out "$OUT/frameworks_beauty_gpu.json"
}
beauty_cell() {  # FRAMEWORK:BACKBONE SECONDS WORKDIR RESULTS: one Beauty cell of compare_frameworks.py, its own JSON
  local cell=$1
  timeout "$2" python3 benchmarks/compare_frameworks.py --dataset beauty --seeds 1234 \
    --backbones "${cell#*:}" --frameworks "${cell%:*}" --data .gpu/hyperllm-official --workdir "$3" \
    --out "$4/frameworks_${cell%:*}_${cell#*:}.json" > "$4/frameworks_${cell%:*}_${cell#*:}.log" 2>&1
}
stage_parallel() {  # issues 12 and 14's Beauty runs at once, one process each, all cut at PARALLEL_SECONDS
  # HGCH's Figure 3 (Base, HyperLLM, w/o Meta; figures.py --only, one runs.json) and the frameworks' cells
  # that have no run yet (KAR, RLMRecCon, RLMRecGen over HGCH; KAR, RLMRecCon over HGCF), each cell its own
  # JSON (here: `compare_frameworks.py --dataset beauty ... --merge <that JSON>`). A run cut by the limit
  # leaves its validation history (unfinished.json, read from its progress file). Everything comes back as
  # one file, parallel.tar.gz (the lease returns at most 8 files).
  # Measured 2026-11-26 (H100, 8 processes, 470 s): each run did 1.0-1.3 s per epoch and none of the 8
  # reached its early stop (Beauty runs need 250-450 epochs); progress files (7-35 MB each) cannot come
  # back, so a cut run is lost but for its history: give it only runs that end inside one call.
  local work=/tmp/beauty-tags secs=${PARALLEL_SECONDS:-480} res=$OUT/parallel run cell
  tag_summary_inputs "$work"
  mkdir -p "$res"
  export OMP_NUM_THREADS=${PARALLEL_THREADS:-2}
  for run in Base HyperLLM "w/o Meta"; do
    timeout "$secs" python3 benchmarks/figures.py --dataset beauty --semantic tag-summaries --figures convergence \
      --backbone HGCH --only "$run" --data .gpu/hyperllm-official --workdir "$work" --out "$res/convergence_hgch" \
      > "$res/figures_HGCH_${run//[^A-Za-z]/_}.log" 2>&1 &
  done
  for cell in ${PARALLEL_CELLS:-KAR:HGCH RLMRecCon:HGCH RLMRecGen:HGCH KAR:HGCF RLMRecCon:HGCF}; do
    beauty_cell "$cell" "$secs" "$work" "$res" &
  done
  wait
  python3 - "$work/saved/runs" "$res/unfinished.json" "$secs" <<'PY'
import json, os, platform, sys, time
from pathlib import Path
import torch
unfinished = {"_run": {"command": f"PARALLEL_SECONDS={sys.argv[3]} bash benchmarks/gpu_session.sh run ... parallel",
                       "commit": os.environ.get("RECBOLE_HYPERLLM_COMMIT"),
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                                  f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
                                  f"torch {torch.__version__}"}}
for folder in sorted(Path(sys.argv[1]).glob("*")):
    progress = sorted(folder.glob("*-last.pth"), key=lambda p: p.stat().st_mtime)
    if progress and not list(folder.glob("*-result.json")):
        state = torch.load(progress[-1], map_location="cpu", weights_only=False)
        unfinished[folder.name] = {"next_epoch": state.get("next_epoch"), "valid_history": state.get("valid_history")}
Path(sys.argv[2]).write_text(json.dumps(unfinished, indent=1))
print("unfinished runs:", {k: v["next_epoch"] for k, v in unfinished.items() if k != "_run"})
PY
  tar -czf "$OUT/parallel.tar.gz" -C "$OUT" parallel && rm -rf "$res"
}

stage_ml100k() {  # issue 12's ml-100k cells in ML100K_LANES parallel processes (one compare_frameworks.py
  # each, its own JSON; a cell is in it once finished, so a lane cut at ML100K_SECONDS keeps its finished cells).
  # A lane is SEEDS:BACKBONES:FRAMEWORKS[:CHOOSE]; --choose (ML100K_CHOOSE) applies to every lane without one. The inputs are the
  # splits made here (prepare: .gpu/ml100k-splits.tar.xz), so the GPU needs no encoder. Back as ml100k.tar.gz;
  # here: compare_frameworks.py --dataset ml-100k --merge <lane JSON> --out benchmarks/results/frameworks_ml100k.json
  # Measured 2026-11-26 (H100, 16 CPUs): 12 lanes + 1 Beauty cell ran at 1.1-2.1 s per epoch each (13 processes
  # on one GPU); 525 s finished 34 ml-100k runs, 225 s with 16 lanes 16 more. Two lanes that split one cell's
  # candidates share its run folder: the second lane's later candidate resumes the first lane's finished run
  # (one more epoch, its seconds only that epoch), so keep the entry with more seconds when merging.
  local work=${ML100K_WORK:-/tmp/fw-ml100k} secs=${ML100K_SECONDS:-480} res=$OUT/ml100k lane seeds backbones frameworks
  mkdir -p "$work" "$res"
  xz -dc .gpu/ml100k-splits.tar.xz | tar -x -C "$work"
  export OMP_NUM_THREADS=${ML100K_THREADS:-1}
  local choose=() item
  for item in ${ML100K_CHOOSE:-kd_weight=0.01,0.001 recon_weight=0.1,0.01}; do choose+=(--choose "$item"); done
  for lane in ${ML100K_LANES:?name the lanes, e.g. 2022:HGCF:Base,HyperLLM}; do
    IFS=: read -r seeds backbones frameworks own <<< "$lane"
    local lane_choose=("${choose[@]}")  # a lane's own 4th field (KEY=V1,V2;KEY2=...) replaces ML100K_CHOOSE:
    if [ -n "$own" ]; then  # its first value trains first, so two lanes can split one cell's candidates
      lane_choose=(); for item in ${own//;/ }; do lane_choose+=(--choose "$item"); done
    fi
    local name=$res/lane_${lane//[^A-Za-z0-9]/_}
    # each lane starts from the committed table: its finished cells and candidates are kept, not trained again,
    # and a --choose candidate with the YAML default reuses the cell trained with it
    cp "${ML100K_FROM:-benchmarks/results/frameworks_ml100k.json}" "$name.json" 2>/dev/null || true
    timeout "$secs" python3 benchmarks/compare_frameworks.py --dataset ml-100k --seeds "$seeds" \
      --backbones "$backbones" --frameworks "$frameworks" "${lane_choose[@]}" --set learning_rate=0.005 \
      --set epochs=150 --set stopping_step=15 --set meta_epochs=150 --set meta_stopping_step=15 \
      ${ML100K_EXTRA:-} --workdir "$work" --out "$name.json" > "$name.log" 2>&1 &
  done
  if [ -n "${ML100K_BEAUTY_CELLS:-}" ]; then  # Beauty cells beside them (FRAMEWORK:BACKBONE ...), same limit
    tag_summary_inputs /tmp/beauty-tags
    for item in $ML100K_BEAUTY_CELLS; do beauty_cell "$item" "$secs" /tmp/beauty-tags "$res" & done
  fi
  wait
  tar -czf "$OUT/ml100k.tar.gz" -C "$OUT" ml100k && rm -rf "$res"
}

stage_profile() {
  local work=/tmp/beauty-profile
  timeout 60 python3 benchmarks/profile_step.py --model HyperLLM_HGCF --data .gpu/hyperllm-official \
    --workdir "$work" --out "$OUT/profile_gpu_one_chunk.json"
  timeout 60 python3 benchmarks/profile_step.py --model HyperLLM_HGCF --data .gpu/hyperllm-official \
    --workdir "$work" --set cl_chunk_size=128 --out "$OUT/profile_gpu_128_rows.json"
  timeout 40 python3 benchmarks/profile_step.py --model HGCF --data .gpu/hyperllm-official \
    --workdir "$work" --out "$OUT/profile_gpu_hgcf.json"
}

run() {
  local commit=$1; shift
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$ROOT PYTHONUNBUFFERED=1 RECBOLE_HYPERLLM_COMMIT=$commit
  local log=$OUT/log.txt stages=("$@")
  [ ${#stages[@]} -gt 0 ] || stages=(cuda table3 vs_authors convergence)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$log" 2>&1
  for stage in "${stages[@]}"; do
    echo "== $stage $(date +%T)" >> "$log"
    "stage_$stage" >> "$log" 2>&1
  done
  echo "== end $(date +%T)" >> "$log"
  rm -f "$OUT"/*.md
  grep -E "^==|models ok|^HyperLLM_|^HGCF|Error|skipped" "$log" | tail -40
}

case "$mode" in
  prepare) prepare ;;
  run) run "$@" ;;
  stage) OUT=${OUT:?set OUT to a folder}; "stage_$1" ;;  # here: one stage without the install, to try it
  *) echo "usage: bash benchmarks/gpu_session.sh prepare | run <commit> [cuda table3 vs_authors convergence]"; exit 2 ;;
esac
