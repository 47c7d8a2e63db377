#!/bin/bash
# hfbatch as a Slurm job array: task K of the array runs shard K of N (N = the array's size).
#
#   export HF_TOKEN=hf_...           # sbatch passes the environment on (--export=ALL)
#   jid=$(sbatch --parsable jobs/recipes/slurm-array.sh)
#   sbatch --dependency=afterany:"$jid" jobs/recipes/slurm-merge.sh
#
# Submit from the folder that holds jobs/. `--shard auto` reads SLURM_ARRAY_TASK_ID (minus
# SLURM_ARRAY_TASK_MIN) and SLURM_ARRAY_TASK_COUNT. A task that dies (node failure,
# preemption, time limit) resumes where it stopped when requeued or resubmitted
# (`sbatch --array=3 jobs/recipes/slurm-array.sh` reruns shard 3 alone). The merge runs
# after every task (afterany) and refuses parts that did not finish: rerun those and merge again.
# hfbatch waits on the network, not the CPU: one core per task is plenty.
#SBATCH --job-name=hfbatch
#SBATCH --array=0-7
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=hfbatch-%A_%a.log

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
hfbatch run jobs/recipes/sharded.toml --shard auto
