"""Migration 2: training jobs and their events.

The models below are a frozen copy of the job tables as they were at version 2 (this file never changes).
"""

from __future__ import annotations

import peewee

from simpletuner.ui.db.fields import JSONTextField

VERSION = 2
NAME = "training jobs and events"


def _models(database: peewee.Database) -> list[type[peewee.Model]]:
    class _Base(peewee.Model):
        class Meta:
            legacy_table_names = False

    class User(_Base):
        class Meta:
            table_name = "users"

    class Job(_Base):
        environment = peewee.CharField(max_length=100, index=True)
        owner = peewee.ForeignKeyField(User, null=True, on_delete="SET NULL")
        owner_name = peewee.CharField(max_length=64, null=True)
        status = peewee.CharField(max_length=16, index=True)
        phase = peewee.CharField(max_length=32, default="queued")
        queue_rank = peewee.DoubleField(default=0.0)
        gpu_ids = JSONTextField(null=True)
        output_dir = peewee.TextField()
        launcher_args = JSONTextField(null=True)
        created_at = peewee.DoubleField()
        started_at = peewee.DoubleField(null=True)
        ended_at = peewee.DoubleField(null=True)
        pid = peewee.IntegerField(null=True)
        process_start = peewee.CharField(max_length=32, null=True)
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

        class Meta:
            table_name = "training_jobs"

    class JobEvent(_Base):
        job = peewee.ForeignKeyField(Job, on_delete="CASCADE")
        at = peewee.DoubleField()
        event = peewee.CharField(max_length=64)
        data = JSONTextField()

        class Meta:
            table_name = "job_events"

    database.bind([User, Job, JobEvent], bind_refs=False, bind_backrefs=False)
    return [Job, JobEvent]


def apply(database: peewee.Database) -> None:
    """Create the job tables (the users table exists since version 1)."""
    database.create_tables(_models(database))
