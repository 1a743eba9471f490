"""A run directory attached to the training loop: `RunStorage`, the hooks (alignlab/core/train.py: RunHooks)
that resume from `checkpoint.pt`, write checkpoints and `metrics.csv`, record rollouts, start from another run's
policy (`init_from`) and read offline data from disk (`sampling.dataset`, `sampling.behaviour_from`).

Provenance: what a run reads from another run is recorded, in its checkpoints and in `sources.json` (the path,
the SHA-256 of the source run's `.hydra/config.yaml`, and the SHA-256 of what was read: `policy.pt`, or the
recording's manifest, which holds every round's), and a resume refuses a source that changed since.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from alignlab.core.sampling import OfflineSource, SamplingConfig
from alignlab.core.train import Loop, RunHooks
from alignlab.errors import ConfigError, DataError
from alignlab.storage.recording import ROLLOUTS, Recorder, Recording, check_recordable, read_table
from alignlab.storage.rundir import (
    CHECKPOINT,
    METRICS,
    BackgroundWriter,
    MetricsFile,
    check_resumable,
    config_hash,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    write_json,
)
from alignlab.storage.warmstart import (
    POLICY,
    check_finished,
    check_reference_mode,
    frozen_copy,
    load_policy,
    sample_offline,
)

SOURCES = "sources.json"


def source_record(path: Path, digest: str) -> dict:
    """What a run read from another: where, that run's config (SHA-256 of its .hydra/config.yaml, None when it has
    none: a dataset made elsewhere) and the SHA-256 of what was read."""
    path = Path(path).absolute()
    run_dir = path.parent if path.name in (ROLLOUTS, POLICY) or path.is_file() else path
    config = run_dir / ".hydra" / "config.yaml"
    config_digest = hashlib.sha256(config.read_bytes()).hexdigest() if config.is_file() else None
    return {"path": str(path), "config_sha256": config_digest, "sha256": digest}


class RunStorage(RunHooks):
    """The run directory `run_dir` (None: nothing written, but warm starts and offline data from disk are read).

    `config` is the resolved config that sets the numbers: a checkpoint records it, and one made with another
    config is refused. With `record_rollouts`, every round's scored samples go to `run_dir`/rollouts.parquet.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        config: dict | None = None,
        init_from: str | None = None,
        init_reference: str = "keep",
        record_rollouts: bool = False,
    ):
        check_reference_mode(init_from, init_reference)
        if init_from is not None:
            check_finished(init_from, "init_from")
        if record_rollouts:
            check_recordable()
            if run_dir is None:
                raise ConfigError("record_rollouts=true records into the run directory, and there is none", "give one")
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.config = config
        self.init_from = init_from
        self.init_reference = init_reference
        self.records_behaviour = record_rollouts
        self.sources: dict[str, dict] = {}
        self.writer = BackgroundWriter()
        self.metrics: MetricsFile | None = None
        self.recorder: Recorder | None = None

    @staticmethod
    def check_sampling(sampling: SamplingConfig) -> None:
        """A missing, empty or damaged recording fails before the task is built and anything is written."""
        if sampling.dataset is not None:
            read_table(sampling.dataset)

    # ---- what the run reads ----------------------------------------------------------------------------------
    def _read_policy(self, run_dir: str, key: str, task):
        policy, digest = load_policy(run_dir, task, key)
        self.sources[key] = source_record(Path(run_dir) / POLICY, digest)
        return policy

    def policies(self, task):
        if self.init_from is None:
            return None
        policy = self._read_policy(self.init_from, "init_from", task)
        return policy, frozen_copy(policy) if self.init_reference == "move" else task.make_reference()

    def offline_source(self, task, sampling: SamplingConfig) -> OfflineSource | None:
        if sampling.dataset is not None:
            recording = Recording(sampling.dataset, task, sampling.samples_per_prompt)
            self.sources["sampling.dataset"] = source_record(Path(sampling.dataset), recording.digest)
            if recording.first_round != 1:
                partial = (
                    f"the recording {sampling.dataset} is partial: it starts at round {recording.first_round} "
                    "(record_rollouts was turned on when its run resumed there)"
                )
                if sampling.dataset_order == "recorded":
                    raise DataError(
                        f"{partial}, so replaying it in recorded order would not replay its run",
                        "use sampling.dataset_order=shuffled, or record the run again from the start (force=true)",
                    )
                print(f"alignlab: warning: {partial}; its rounds are used as they are", file=sys.stderr)
            if sampling.dataset_order == "recorded":
                return OfflineSource(replay=recording)
            return OfflineSource(draw=lambda generator: recording.data)
        if sampling.behaviour_from is not None:
            behaviour = self._read_policy(sampling.behaviour_from, "sampling.behaviour_from", task)
            n, prompts = sampling.samples_per_prompt, sampling.offline_prompts
            return OfflineSource(draw=lambda generator: sample_offline(task, behaviour, prompts, n, generator))
        return None

    def check_sources(self, state: dict, path: Path) -> None:
        """Refuse to resume when a source the checkpoint recorded changed since (re-run, or edited)."""
        saved = state.get("sources", {})
        for key in sorted(set(saved) | set(self.sources)):
            before, now = saved.get(key), self.sources.get(key)
            if before is None or now is None:
                continue  # a source added or dropped is a change of config: check_resumable names it
            if before["sha256"] != now["sha256"] or before["config_sha256"] != now["config_sha256"]:
                what = "its data" if before["sha256"] != now["sha256"] else "its run's config"
                raise ConfigError(
                    f"{key}={now['path']} changed since this run started ({what} differs from what the checkpoint "
                    f"{path} recorded): resuming would mix two sources",
                    "force=true to run again from the start on the new source, or restore the source run",
                )

    # ---- what the run writes ---------------------------------------------------------------------------------
    def start(self, loop: Loop) -> None:
        if self.run_dir is None:
            return
        remove_stale_temporaries(self.run_dir)
        self.metrics = MetricsFile(self.run_dir / METRICS)
        path = self.run_dir / CHECKPOINT
        state = load_checkpoint(path) if loop.cfg.checkpoint_every else None
        if state is not None:
            check_resumable(state, self.config, path)
            self.check_sources(state, path)
            loop.load_state_dict(state)
            loop.rows[:] = self.metrics.restore(state["metrics"])
        if self.sources:
            write_json(self.run_dir / SOURCES, self.sources)
        if self.records_behaviour:
            samples_per_prompt = loop.sampler.cfg.samples_per_prompt
            self.recorder = Recorder(self.run_dir, loop.task, samples_per_prompt, resume_after=loop.iteration)

    def rollout(self, loop: Loop, rollout, iteration: int) -> None:
        if self.recorder is not None:
            self.recorder.write(rollout, iteration, loop.sampler.syncs)

    def round_end(self, loop: Loop) -> None:
        every = loop.cfg.checkpoint_every
        if self.run_dir is None or not every or loop.iteration % every:
            return
        self.metrics.write(loop.rows)
        state = loop.state_dict()
        state.update(
            metrics=self.metrics.state(),
            config=self.config,
            config_hash=None if self.config is None else config_hash(self.config),
            sources=self.sources,
        )
        save_checkpoint(self.run_dir / CHECKPOINT, state, self.writer)

    def stop(self, loop: Loop) -> None:
        self.writer.wait(raise_error=False)  # the last checkpoint is on disk before the error reaches the caller

    def end(self, loop: Loop) -> None:
        self.writer.wait()
        if self.metrics is not None:  # the rows since the last checkpoint (all of them without checkpoints)
            self.metrics.write(loop.rows)
