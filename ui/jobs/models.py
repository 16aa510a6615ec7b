"""Job tables: one row per training job, and the events the job's run wrote (plus the supervisor's own).

The supervisor process is the only writer of process fields (pid, exit status, progress, events); request workers
write what users ask for (a new job, a stop request, a cancellation, a new queue order). Every worker answers from
these rows, so the answer is the same whichever worker serves it.
"""

from __future__ import annotations

import peewee

from simpletuner.ui.db.fields import JSONTextField
from simpletuner.ui.db.models import BaseModel, User

QUEUED, RUNNING, STOPPING = "queued", "running", "stopping"
#: What a job does: train an environment, or render a finished run's model beside the base model.
TRAIN, TRY = "train", "try"
COMPLETED, FAILED, STOPPED, CANCELLED = "completed", "failed", "stopped", "cancelled"
#: Jobs that hold (or wait for) their GPU set.
ACTIVE = (RUNNING, STOPPING)
#: Jobs that are over.
ENDED = (COMPLETED, FAILED, STOPPED, CANCELLED)
STATUSES = (QUEUED, *ACTIVE, *ENDED)


class Job(BaseModel):
    """A training job: an environment to train, its owner, its place in the queue, its process and progress.

    ``gpu_ids`` is the list of GPU ids the job uses, or None for every visible GPU (it then excludes every other
    job). ``run_dir`` is the run folder the job's process writes everything into (see
    :mod:`simpletuner.core.training.run_folders`). ``pid`` is the job's wrapper process (leader of its process
    group); null while the job waits or before the supervisor launched it, and for jobs of other executors than
    ``local``, which the supervisor follows through ``executor_ref``.
    """

    environment = peewee.CharField(max_length=100, index=True)
    owner = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="jobs")
    owner_name = peewee.CharField(max_length=64, null=True)  # kept as text so history outlives the user
    status = peewee.CharField(max_length=16, index=True)
    phase = peewee.CharField(max_length=32, default="queued")
    queue_rank = peewee.DoubleField(default=0.0)
    gpu_ids = JSONTextField(null=True)
    output_dir = peewee.TextField()  # the environment's output root, shared by its jobs
    # The job's own folder under output_dir, made when it is launched; null before, and for jobs of versions
    # without run folders (their files are in output_dir itself).
    run_dir = peewee.TextField(null=True)
    launcher_args = JSONTextField(null=True)  # ``accelerate launch`` options, or null to run in one process
    created_at = peewee.DoubleField()
    started_at = peewee.DoubleField(null=True)
    # Set in the update that gives the job an ended status, and never otherwise: the status reads the newest one.
    ended_at = peewee.DoubleField(null=True, index=True)
    pid = peewee.IntegerField(null=True)
    process_start = peewee.CharField(max_length=32, null=True)  # the process's start time in clock ticks
    stop_requested_at = peewee.DoubleField(null=True)
    stop_requested_by = peewee.CharField(max_length=64, null=True)
    term_sent_at = peewee.DoubleField(null=True)
    exit_code = peewee.IntegerField(null=True)
    exit_signal = peewee.IntegerField(null=True)
    error = peewee.TextField(null=True)
    log_tail = JSONTextField(null=True)
    events_offset = peewee.BigIntegerField(default=0)
    step = peewee.IntegerField(null=True)
    total_steps = peewee.IntegerField(null=True)
    epoch = peewee.IntegerField(null=True)
    loss = peewee.DoubleField(null=True)
    it_per_s = peewee.DoubleField(null=True)
    eta_s = peewee.DoubleField(null=True)
    output = peewee.TextField(null=True)
    last_event_at = peewee.DoubleField(null=True)
    # Where the job runs: the executor's name (null: ``local``), its options as the job was started with them, its
    # reference to the submitted job (``"PID TICKS"`` for local jobs, a Ray submission id, a Slurm job id) and the
    # nodes, processes and GPUs the job asked for.
    executor = peewee.CharField(max_length=64, null=True)
    executor_options = JSONTextField(null=True)
    executor_ref = peewee.TextField(null=True)
    resources = JSONTextField(null=True)
    # Handed to a cluster's scheduler: the server's queue does not hold it back for GPUs of the server's own.
    cluster = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])
    # ``train`` or ``try``; a try job's ``task`` holds its request (see simpletuner.core.trying.TryRequest), the
    # run folder it renders from and the job that trained it.
    kind = peewee.CharField(max_length=16, default=TRAIN, constraints=[peewee.SQL("DEFAULT 'train'")])
    task = JSONTextField(null=True)

    class Meta:
        table_name = "training_jobs"


class JobEvent(BaseModel):
    """One event of a job, in the order received; its id is the server-sent event id clients resume from."""

    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", backref="events")
    at = peewee.DoubleField()
    event = peewee.CharField(max_length=64)
    data = JSONTextField()

    class Meta:
        table_name = "job_events"


JOB_MODELS: tuple[type[BaseModel], ...] = (Job, JobEvent)


def bind_job_models(database: peewee.Database) -> None:
    """Bind the job models to ``database`` (once per process, beside the server's own models)."""
    database.bind(list(JOB_MODELS), bind_refs=False, bind_backrefs=False)
