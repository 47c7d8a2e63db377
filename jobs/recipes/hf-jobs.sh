#!/bin/bash
# hfbatch on Hugging Face Jobs: N jobs, one per shard, each with `--shard K/N`; then one job merges.
#
#   export HF_TOKEN=hf_...                       # passed to each job as a secret, never in its command
#   HFBATCH_DATASET=me/prompts HFBATCH_BUCKET=me/hfbatch-out jobs/recipes/hf-jobs.sh 8
#   hf jobs ps                                   # wait until the 8 jobs are done, then:
#   HFBATCH_BUCKET=me/hfbatch-out jobs/recipes/hf-jobs.sh merge 8
#
# The input is prompts.jsonl in the dataset repo HFBATCH_DATASET (mounted read-only at /data);
# the parts, their stats and the merged output go to the bucket HFBATCH_BUCKET (mounted at /out),
# so a shard rerun after a failure (`hf-jobs.sh 8 3` reruns shard 3 alone) resumes its part.
# HF Jobs sets no array index, so each job is given its K/N on its command line.
set -euo pipefail

image="python:3.12-slim"
install="pip install --quiet hfbatch"
bucket="${HFBATCH_BUCKET:?set HFBATCH_BUCKET to the ORG/NAME of a bucket for the outputs}"

if [ "${1:-}" = merge ]; then
    n="${2:?usage: hf-jobs.sh merge N}"
    hf jobs run --detach --name "hfbatch-merge" --secrets HF_TOKEN \
        --volume "hf://buckets/${bucket}:/out" "$image" \
        sh -c "$install && hfbatch merge --output /out/all.parquet /out/part-*-of-$(printf %05d "$n").parquet"
    exit 0
fi

dataset="${HFBATCH_DATASET:?set HFBATCH_DATASET to the ORG/NAME of the dataset holding prompts.jsonl}"
n="${1:?usage: hf-jobs.sh N [K...]}"
shift
[ $# -gt 0 ] || set -- $(seq 0 $((n - 1)))
for k in "$@"; do
    hf jobs run --detach --name "hfbatch-${k}-of-${n}" --secrets HF_TOKEN --timeout 12h \
        --volume "hf://datasets/${dataset}:/data" --volume "hf://buckets/${bucket}:/out" "$image" \
        sh -c "$install && hfbatch run --input /data/prompts.jsonl --output '/out/part-{shard}.parquet' \
            --model openai/gpt-oss-120b --max-tokens 256 --concurrency 32 --shard $k/$n"
done
