"""The consumer mirrors a device's offline sale into Django models exactly once: also when the handler fails
mid-run, and when the worker process is killed (SIGKILL) mid-page and run again, as a management command and as
the Django-RQ job of docs/erp-guide.md §3 on a real `rqworker`. Exactly once is checked by
unique constraints (a change mirrored twice cannot commit) and by counts against the feed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from dukasync import Client, Outbox
from dukasync.client import Change
from dukasync.django.feed import CursorMoved, mirror_into
from tests.erpapp.models import MirroredChange, MirroredSale
from tests.erpapp.sync import mirror

PYTHON_DIR = Path(__file__).resolve().parents[1]


def offline_sale(client: Client, key: str) -> int:
    """A sale the till recorded offline hours ago, pushed now; returns the version of the sale's row."""
    outbox = Outbox("water")
    outbox.command(
        "record_sale",
        key,
        {
            "sold_at": "2026-11-25T07:15:00+03:00",
            "lines": [{"product_id": "w-5l", "quantity": "2", "unit_price": "150.00"}],
            "payments": [{"method": "cash", "amount": "300.00"}],
        },
    )
    result = outbox.send(client)
    assert result["results"][0]["status"] in ("applied", "conflict"), result
    return min(result["results"][0]["versions"])


def assert_mirrored_once(client: Client, sale_key: str) -> None:
    head = client.changes("water", "0", limit=1)["head"]
    versions = list(MirroredChange.objects.filter(scope="water").values_list("version", flat=True))
    assert sorted(versions) == list(range(1, head + 1))  # every change once (and the constraint held)
    sale = MirroredSale.objects.get(scope="water", key=sale_key)
    assert (sale.total, sale.status) == (Decimal("300.00"), "posted")


@pytest.mark.usefixtures("clean_mirror")
def test_a_handler_failing_mid_run_then_a_rerun_mirrors_each_change_once(
    server_url: str, owner_token: str, cashier_token: str
) -> None:
    key = f"sale-py-{uuid.uuid4().hex[:8]}"
    with Client(server_url, cashier_token) as till:
        sale_version = offline_sale(till, key)
    calls = 0

    def fail_in_the_second_page(scope: str, change: Change) -> None:
        nonlocal calls
        calls += 1
        mirror(scope, change)
        if calls == 8:  # pages of 5: the third change of the second page, two already written in its transaction
            raise RuntimeError("worker died")

    with Client(server_url, owner_token) as client:
        with pytest.raises(RuntimeError, match="worker died"):
            mirror_into(client, "water", "erp", fail_in_the_second_page, limit=5)
        assert MirroredChange.objects.count() == 5  # the first page only: the second rolled back whole
        handled = mirror_into(client, "water", "erp", mirror, limit=5)
        assert handled >= sale_version - 5
        assert_mirrored_once(client, key)
        # A third run finds nothing new and writes nothing.
        assert mirror_into(client, "water", "erp", mirror, limit=5) == 0
        assert_mirrored_once(client, key)


@pytest.mark.usefixtures("clean_mirror")
def test_a_consumer_killed_mid_page_and_rerun_mirrors_each_change_once(
    server_url: str, owner_token: str, cashier_token: str
) -> None:
    key = f"sale-py-{uuid.uuid4().hex[:8]}"
    with Client(server_url, cashier_token) as till:
        sale_version = offline_sale(till, key)

    def run(handler: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "django", "dukasync_consume", "--scope", "water", "--name", "erp",
                   "--handler", handler, "--limit", "4"]
        env = {**os.environ, **extra_env}
        return subprocess.run(command, cwd=PYTHON_DIR, env=env, capture_output=True, text=True, timeout=120)

    killed = run("tests.erpapp.sync.mirror_then_die", DIE_AT_VERSION=str(sale_version))
    assert killed.returncode == -9, killed.stderr  # SIGKILL, inside the page's transaction
    before = MirroredChange.objects.count()
    assert 0 < before < sale_version  # pages before the kill committed; the killed page did not
    assert not MirroredSale.objects.filter(key=key).exists()

    rerun = run("tests.erpapp.sync.mirror")
    assert rerun.returncode == 0, rerun.stderr
    with Client(server_url, owner_token) as client:
        assert_mirrored_once(client, key)


@pytest.mark.usefixtures("clean_mirror")
def test_two_runs_of_one_consumer_at_once_never_mirror_a_page_twice(server_url: str, owner_token: str) -> None:
    class RacedClient(Client):
        """Pulls a page, and before the caller stores it, another run of the same consumer catches up."""

        raced = False

        def changes(self, *args: Any, **kwargs: Any) -> Any:
            page = super().changes(*args, **kwargs)
            if not self.raced:
                self.raced = True
                with Client(server_url, owner_token) as other:
                    mirror_into(other, "water", "erp", mirror, limit=5)
            return page

    with RacedClient(server_url, owner_token) as client:
        with pytest.raises(CursorMoved):
            mirror_into(client, "water", "erp", mirror, limit=5)
        head = client.changes("water", "0", limit=1)["head"]
    versions = sorted(MirroredChange.objects.filter(scope="water").values_list("version", flat=True))
    assert versions == list(range(1, head + 1))


@pytest.mark.usefixtures("clean_mirror")
def test_the_rq_job_on_a_real_worker_killed_mid_page_then_rerun_mirrors_each_change_once(
    server_url: str, owner_token: str, cashier_token: str
) -> None:
    import django_rq
    from django.conf import settings
    from rq.job import JobStatus

    key = f"sale-rq-{uuid.uuid4().hex[:8]}"
    with Client(server_url, cashier_token) as till:
        sale_version = offline_sale(till, key)
    queue_name = next(iter(settings.RQ_QUEUES))
    queue = django_rq.get_queue(queue_name)

    def work(**extra_env: str) -> tuple[Any, str]:
        """Enqueues the job as the ERP does, runs a real worker until the queue is empty; the job's status after."""
        job = queue.enqueue("tests.erpapp.jobs.mirror_sales", "water")
        command = [sys.executable, "-m", "django", "rqworker", queue_name, "--burst"]
        env = {**os.environ, **extra_env}
        done = subprocess.run(command, cwd=PYTHON_DIR, env=env, capture_output=True, text=True, timeout=120)
        job.refresh()
        return job.get_status(), done.stdout + done.stderr

    status, log = work(DIE_AT_VERSION=str(sale_version))
    assert status == JobStatus.FAILED, log  # the work-horse died by SIGKILL mid-page
    before = MirroredChange.objects.count()
    assert 0 < before < sale_version  # pages before the kill committed; the killed page did not
    assert not MirroredSale.objects.filter(key=key).exists()

    status, log = work()
    assert status == JobStatus.FINISHED, log
    with Client(server_url, owner_token) as client:
        assert_mirrored_once(client, key)
