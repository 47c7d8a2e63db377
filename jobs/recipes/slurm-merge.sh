#!/bin/bash
# Joins the parts of jobs/recipes/slurm-array.sh once every task has ended (see there).
#SBATCH --job-name=hfbatch-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=1:00:00
#SBATCH --output=hfbatch-merge-%j.log

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
hfbatch merge --output jobs/out/all.parquet jobs/out/part-*-of-*.parquet
