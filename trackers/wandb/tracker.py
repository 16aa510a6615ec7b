"""A W&B run per training run, continued on resume.

The run id is kept in ``<run folder>/wandb_run_id``; a resumed training run reads it from the folder of the run it
resumes (``RunInfo.resumed_from``) and logs into the same W&B run.
Values are plotted against ``global_step`` (logged with every row) rather than W&B's own step counter, so rows a
resumed run logs again for steps W&B already saw are kept instead of being dropped as out of order.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import wandb

from simpletuner.core.interfaces import RunInfo, Tracker

RUN_ID_FILE = "wandb_run_id"
STEP_METRIC = "global_step"


class WandbTracker(Tracker):
    """Logs to W&B with the ``wandb`` library (online or offline)."""

    def __init__(self, options: Any) -> None:
        self._options = options
        self._run: Any = None
        self.run_id: str | None = None

    def start(self, run: RunInfo) -> None:
        """Start a W&B run (or continue the stored one when resuming)."""
        output_dir = Path(run.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        id_file = output_dir / RUN_ID_FILE
        previous = Path(run.resumed_from) / RUN_ID_FILE if run.resumed_from is not None else id_file
        stored = previous.read_text(encoding="utf-8").strip() if previous.is_file() else ""
        resuming = run.resumed_step > 0 and bool(stored)
        self.run_id = stored if resuming else _new_run_id()
        id_file.write_text(self.run_id + "\n", encoding="utf-8")
        self._run = wandb.init(
            project=run.project_name,
            name=run.run_name,
            entity=self._options.wandb_entity,
            mode=self._options.wandb_mode,
            tags=list(self._options.wandb_tags) or None,
            id=self.run_id,
            resume="allow" if resuming else None,
            dir=str(output_dir),
            config=dict(run.config),
            reinit="create_new",
        )
        self._run.define_metric(STEP_METRIC)
        self._run.define_metric("*", step_metric=STEP_METRIC)

    def log_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Log one row of scalars at ``global_step``."""
        self._require().log({STEP_METRIC: step, **{str(k): float(v) for k, v in values.items()}})

    def log_images(self, step: int, images: Mapping[str, Sequence[Path]]) -> None:
        """Log validation images, one W&B image list per caption under ``validation/<caption>``."""
        row: dict[str, Any] = {STEP_METRIC: step}
        for caption, paths in images.items():
            row[f"validation/{caption}"] = [wandb.Image(str(p), caption=str(caption)) for p in paths]
        self._require().log(row)

    def finish(self, status: str) -> None:
        """Finish the W&B run (a failed or stopped training marks it failed) and wait until its data is written."""
        self._require().finish(exit_code=0 if status == "completed" else 1)
        self._run = None
        # finish() can return before W&B's service has written everything (offline files in particular);
        # teardown waits for it, so the run folder is complete once training reports it finished.
        wandb.teardown()

    def _require(self) -> Any:
        if self._run is None:
            raise RuntimeError("the wandb tracker was not started")
        return self._run


def _new_run_id() -> str:
    # W&B run ids are short lowercase alphanumerics; generated here so the id is known before wandb.init.
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
