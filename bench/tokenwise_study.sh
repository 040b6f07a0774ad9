#!/usr/bin/env bash
# bench/tokenwise_study.sh — chooses the token-wise defaults by measurement (method.md §1 leaves
# them open): for each option set, generate with a uniform budget on the shipped wan-mini and
# compare with the dense output of the same prompt and seed (PSNR/SSIM in pixel space).
#   bash bench/tokenwise_study.sh [BUILD_DIR] [BUDGET ...]       -> table on stdout
#   STUDY_CONFIGS="name|--w-alpha 0.1;..." bash bench/tokenwise_study.sh   other option sets
set -u
B=${1:-build}; shift || true
BUDGETS=${*:-0.4 0.25}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
PROMPTS=(
  "a red circle moves left over a blue background"
  "a green square moves up over a white background"
  "a yellow triangle moves right over a purple background"
  "a white cross moves down over a black background"
  "a cyan ring moves left over an orange background"
  "a blue square moves slowly right over a green background"
)
CONFIGS=(
  "paper|--w-alpha 1 --w-beta 0.5"
  "output-cache|--w-alpha 1 --w-beta 0.5 --cache output"
  "no-penalty|--w-alpha 1 --w-beta 0"
  "penalty-only|--w-alpha 0 --w-beta 0.5"
  "raw-delta|--w-alpha 1 --w-beta 0.5 --delta-norm none"
  "strong-penalty|--w-alpha 1 --w-beta 2"
)
# STUDY_CONFIGS="name|args;name|args" replaces the list above
if [ -n "${STUDY_CONFIGS:-}" ]; then IFS=';' read -r -a CONFIGS <<<"$STUDY_CONFIGS"; fi
gen() { $B/astraea-generate --model wan-mini --backend cpu --quiet --prompt "$1" --seed "$2" --out "$3" "${@:4}"; }
for i in "${!PROMPTS[@]}"; do gen "${PROMPTS[$i]}" $((100+i)) $T/dense$i.safetensors || exit 1; done
printf "%-16s %-7s %10s %9s %8s\n" config budget mse psnr_dB ssim
for budget in $BUDGETS; do
  for c in "${CONFIGS[@]}"; do
    name=${c%%|*}; args=${c#*|}
    tot_mse=0; tot_psnr=0; tot_ssim=0; n=0
    for i in "${!PROMPTS[@]}"; do
      gen "${PROMPTS[$i]}" $((100+i)) $T/tw.safetensors --budget $budget $args || exit 1
      read mse psnr ssim < <($B/tests/st_tool quality $T/tw.safetensors x $T/dense$i.safetensors x)
      tot_mse=$(echo "$tot_mse + $mse" | bc -l); tot_psnr=$(echo "$tot_psnr + $psnr" | bc -l)
      tot_ssim=$(echo "$tot_ssim + $ssim" | bc -l); n=$((n+1))
    done
    printf "%-16s %-7s %10.6f %9.2f %8.4f\n" $name $budget $(echo "$tot_mse/$n" | bc -l) \
      $(echo "$tot_psnr/$n" | bc -l) $(echo "$tot_ssim/$n" | bc -l)
  done
done
