"""What a run writes and reads: the run directory (atomic writes, metrics, checkpoints), rollout recordings
(Parquet datasets) and saved policies for warm starts; `alignlab-data` inspects recordings."""
