"""How stages run: `stage_dir` (the one resumable stage-directory protocol: keys, the finished marker,
reuse of finished shards), `cluster` (Dask: shard tasks, per-input and per-partition passes, gather), `stages`
(the per-partition stages by name) and one driver per global stage (classify, the three dedups),
plus tokenize and rephrase. No Prefect here: the flows wrap these calls in tasks."""
