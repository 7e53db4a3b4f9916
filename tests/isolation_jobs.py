"""Running queued jobs in-process, as a worker would (shared by several test modules)."""

from __future__ import annotations

from typing import Any

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from recova.platform.kernel.extension import platform
from recova.platform.kernel.jobs import QUEUES, job_queue


def run_all_jobs(app: Any) -> None:
    """Run every queued job in this process, as a worker would, and require success."""
    objects = platform(app)
    queues = [
        job_queue(objects.redis, name, prefix=objects.settings.queue_prefix) for name in QUEUES
    ]
    with app.app_context():
        SimpleWorker(queues, connection=objects.redis, serializer=JSONSerializer).work(burst=True)
    failed = {queue.name: queue.failed_job_registry.get_job_ids() for queue in queues}
    assert all(not ids for ids in failed.values()), failed
