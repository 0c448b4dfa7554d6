#!/usr/bin/env bash
# The ImageNet-256 recipes at their real width on one GPU, bf16 compute, synthetic data (no dataset, no weights):
# step time, images/s, tokens/s, MFU, XLA's and the allocator's peak memory (benchmarks/train_throughput.py) for
# both tokenizers (with their StyleGAN discriminator and LPIPS-VGG16 of random weights) and the three priors (on
# random 16x16 codes of 1024 entries), at the papers' batch per device (global batch / 8); then sampling ms/image
# at batch 64 of each recipe's own sampler at real width (benchmarks/sampling.py --configs) and the VQGAN decoder.
#
#   bash benchmarks/gpu.sh [OUTDIR]                      writes OUTDIR/gpu_*.{md,json} (default benchmarks/results)
#   GPU_SH_SMOKE=1 bash benchmarks/gpu.sh /tmp/gpu_smoke   on a CPU: the same commands on shallower networks,
#                                                        batch 1 (2 for the priors), 2 steps: proves the script runs
#                                                        top to bottom (the numbers mean nothing)
# Environment: PYTHON (default python), STEPS (timed steps, default 20), ONLY (names to run, e.g. "ar maskgit"),
# LARGEST=1 (also search the largest batch per device that fits: a few more compilations per recipe).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
PY=${PYTHON:-python}
SMOKE=${GPU_SH_SMOKE:-0}
STEPS=${STEPS:-20}
mkdir -p "$OUT"

if [[ "$SMOKE" == 1 ]]; then
  STEPS=2
  echo "gpu.sh: smoke mode (GPU_SH_SMOKE=1): tiny batches, $STEPS steps, on whatever JAX sees." >&2
elif ! $PY -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
  echo "gpu.sh: no GPU visible to JAX (jax.default_backend() is $($PY -c 'import jax; print(jax.default_backend())' \
2>/dev/null || echo 'unavailable')). Install requirements-gpu.txt on a GPU machine, or run with GPU_SH_SMOKE=1 to \
check the script on a CPU." >&2
  exit 1
fi
# Let XLA use the GPU's memory beyond JAX's default 75% preallocation, as a training run would.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}

# name | config | per-device batch (paper's global / 8) | the config's compute dtype key | extra flags | smoke flags
RECIPES=(
  "maskgit_vqgan|configs/tokenizer/maskgit_vqgan_imagenet.py:data=synthetic|32|model||--config.model.channels=32 \
--config.model.num_res_blocks=1"
  "vit_vqgan|configs/tokenizer/vit_vqgan_imagenet.py:data=synthetic|32|model||--config.model.vit_depth=1"
  "maskgit|configs/prior/maskgit_imagenet.py|32|network|--codes=1024:16x16|--config.network.depth=1"
  "ar|configs/prior/ar_imagenet.py|32|network|--codes=1024:16x16|--config.network.depth=1"
  "diffusion|configs/prior/diffusion_imagenet.py|64|network|--codes=1024:16x16|--config.network.depth=1"
)

for recipe in "${RECIPES[@]}"; do
  IFS="|" read -r name config batch section extra smoke <<< "$recipe"
  if [[ -n "${ONLY:-}" && " $ONLY " != *" $name "* ]]; then continue; fi
  if [[ "$SMOKE" == 1 ]]; then
    batch=$([[ "$section" == network ]] && echo 2 || echo 1)
    extra="$extra $smoke"
  fi
  echo "=== $name: $config, batch $batch per device, bf16 ===" >&2
  # shellcheck disable=SC2086  (extra: a few flags without spaces)
  $PY benchmarks/train_throughput.py --config="$config" --config.$section.compute_dtype=bfloat16 $extra \
    --per_device_batch="$batch" --steps="$STEPS" --measure=compute \
    --batch_multiple="$([[ "${LARGEST:-0}" == 1 ]] && echo 1 || echo 0)" --out="$OUT/gpu_$name"
done

if [[ -z "${ONLY:-}" || " $ONLY " == *" sampling "* ]]; then
  echo "=== sampling: the three ImageNet samplers at batch 64, bf16, and the MaskGIT VQGAN decoder ===" >&2
  smoke=()
  if [[ "$SMOKE" == 1 ]]; then smoke=(--set=network.depth=1 --tokenizer_set=model.channels=32 --batches=2); fi
  $PY benchmarks/sampling.py --configs=configs/prior/maskgit_imagenet.py,configs/prior/ar_imagenet.py,\
configs/prior/diffusion_imagenet.py --codes=1024:16x16 \
    --tokenizer=configs/tokenizer/maskgit_vqgan_imagenet.py:data=synthetic --compute_dtype=bfloat16 \
    --batches=64 --repeats="$([[ "$SMOKE" == 1 ]] && echo 1 || echo 3)" "${smoke[@]}" --out="$OUT/gpu_sampling"
fi
echo "gpu.sh: results in $OUT/gpu_*.md" >&2
