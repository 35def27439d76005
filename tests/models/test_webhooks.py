"""Webhook fan-out, batch completion, secrets and replays, on real PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from migrations import upgrade
from models import (
    AttemptTrigger,
    Batch,
    Job,
    JobStatus,
    MessageStatus,
    OutboxEvent,
    OutboxType,
    Tenant,
    WebhookEndpoint,
    WebhookMessage,
)
from models.access import create_tenant
from models.base import utcnow
from models.db import make_engine
from models.ids import id_pattern
from models.jobs import complete_batch_if_done, finish_job, new_batch_id, queue_jobs
from models.outbox import add_outbox_event
from models.webhooks import (
    create_endpoint,
    disable_endpoint,
    fan_out,
    replay_failed,
    replay_message,
    rotate_endpoint_secret,
    rotate_tenant_secret,
    set_enabled,
    signing_secrets,
    tenant_webhook_secret,
    wants,
)
from reelyard.webhooks import API_VIEWS

HOOK = "https://hooks.example.com/reelyard"


def request(**changes):
    values = {
        "images": ["https://photos.example.com/a.jpg"],
        "prompt": "A calm slideshow.",
        "options": {"aspect_ratio": "16:9"},
        "metadata": {"order": "A-1", "nested": {"k": [1, 2]}},
        "webhook_url": None,
    }
    values.update(changes)
    return values


def new_job(session, tenant_id, **changes):
    row = queue_jobs(session, tenant_id, [request(**changes)])[0]
    return session.get(Job, row["id"])


def fan_out_all(session, tenant_id, now=None):
    """Fan out everything due; the messages made for ``tenant_id`` (other tests' committed
    events may be due as well)."""
    fan_out(session, now or utcnow(), views=API_VIEWS, limit=10_000)
    return session.scalars(
        select(WebhookMessage)
        .where(WebhookMessage.tenant_id == tenant_id)
        .order_by(WebhookMessage.endpoint_id)
    ).all()


@pytest.fixture
def tenant(db_session):
    return create_tenant(db_session, "Hooks Inc")


def test_the_outbox_event_id_is_an_evt_id(db_session, tenant):
    job = new_job(db_session, tenant.id)
    finish_job(db_session, job.id, JobStatus.CANCELED)
    event = db_session.scalars(select(OutboxEvent).where(OutboxEvent.job_id == job.id)).one()
    assert id_pattern("evt").match(event.id)


@pytest.mark.parametrize(
    ("event_types", "event_type", "expected"),
    [
        ([], OutboxType.JOB_SUCCEEDED, True),
        ([], OutboxType.BATCH_COMPLETED, True),
        ([], OutboxType.JOB_PROGRESS, False),
        (["job.progress"], OutboxType.JOB_PROGRESS, True),
        (["job.failed"], OutboxType.JOB_SUCCEEDED, False),
        (["job.failed", "job.succeeded"], OutboxType.JOB_SUCCEEDED, True),
    ],
)
def test_an_endpoint_wants_what_it_lists_or_everything_but_progress(
    event_types, event_type, expected
):
    assert wants(event_types, event_type) is expected


def test_fan_out_makes_one_message_per_enabled_endpoint_that_wants_the_type(db_session, tenant):
    everything = create_endpoint(db_session, tenant.id, url=f"{HOOK}/all")
    failures = create_endpoint(db_session, tenant.id, url=f"{HOOK}/f", event_types=["job.failed"])
    off = create_endpoint(db_session, tenant.id, url=f"{HOOK}/off", enabled=False)
    job = new_job(db_session, tenant.id)
    finish_job(db_session, job.id, JobStatus.CANCELED)

    messages = fan_out_all(db_session, tenant.id)

    assert {m.endpoint_id for m in messages} == {everything.id}
    assert failures.id not in {m.endpoint_id for m in messages}
    assert off.id not in {m.endpoint_id for m in messages}
    (message,) = messages
    assert id_pattern("msg").match(message.id)
    assert message.url == f"{HOOK}/all"
    assert message.event_type is OutboxType.JOB_CANCELED
    assert message.status is MessageStatus.PENDING
    assert message.attempt_count == 0
    assert message.next_attempt_at is not None
    assert message.next_attempt_trigger is AttemptTrigger.SCHEDULED


def test_the_payload_is_the_job_as_the_api_shows_it_metadata_included(db_session, tenant):
    create_endpoint(db_session, tenant.id, url=HOOK)
    job = new_job(db_session, tenant.id)
    finish_job(db_session, job.id, JobStatus.CANCELED)
    event = db_session.scalars(select(OutboxEvent).where(OutboxEvent.job_id == job.id)).one()

    (message,) = fan_out_all(db_session, tenant.id)

    db_session.refresh(job)
    assert message.payload == {
        "type": "job.canceled",
        "timestamp": event.created_at.isoformat(),
        "data": API_VIEWS.job(job),
    }
    assert message.payload["data"]["metadata"] == {"order": "A-1", "nested": {"k": [1, 2]}}
    assert message.payload["data"]["status"] == "canceled"


def test_a_jobs_own_webhook_url_gets_its_end_signed_with_the_tenant_secret(db_session, tenant):
    job = new_job(db_session, tenant.id, webhook_url=f"{HOOK}/job")
    finish_job(db_session, job.id, JobStatus.CANCELED)

    (message,) = fan_out_all(db_session, tenant.id)

    assert message.endpoint_id is None
    assert message.url == f"{HOOK}/job"
    db_session.refresh(tenant)
    assert tenant.webhook_secret is not None
    assert signing_secrets(db_session, message, utcnow()) == [tenant.webhook_secret]


def test_progress_goes_only_to_endpoints_that_list_it_never_to_the_jobs_url(db_session, tenant):
    create_endpoint(db_session, tenant.id, url=f"{HOOK}/all")
    wants_progress = create_endpoint(
        db_session, tenant.id, url=f"{HOOK}/p", event_types=["job.progress"]
    )
    job = new_job(db_session, tenant.id, webhook_url=f"{HOOK}/job")
    add_outbox_event(db_session, tenant.id, OutboxType.JOB_PROGRESS, job_id=job.id)

    messages = fan_out_all(db_session, tenant.id)

    assert [(m.endpoint_id, m.event_type) for m in messages] == [
        (wants_progress.id, OutboxType.JOB_PROGRESS)
    ]


def test_fanned_out_events_are_dispatched_and_never_fanned_out_twice(db_session, tenant):
    create_endpoint(db_session, tenant.id, url=HOOK)
    job = new_job(db_session, tenant.id)
    finish_job(db_session, job.id, JobStatus.CANCELED)
    now = utcnow()

    first = fan_out(db_session, now, views=API_VIEWS, limit=10_000)
    second = fan_out(db_session, now, views=API_VIEWS, limit=10_000)

    assert len(first) >= 1
    assert second == []
    event = db_session.scalars(select(OutboxEvent).where(OutboxEvent.job_id == job.id)).one()
    assert event.dispatched_at == now


def test_an_event_nobody_wants_is_dispatched_without_a_message(db_session, tenant):
    job = new_job(db_session, tenant.id)
    finish_job(db_session, job.id, JobStatus.CANCELED)

    assert fan_out_all(db_session, tenant.id) == []

    event = db_session.scalars(select(OutboxEvent).where(OutboxEvent.job_id == job.id)).one()
    assert event.dispatched_at is not None


def test_another_tenants_endpoints_receive_nothing(db_session, tenant):
    other = create_tenant(db_session, "Other")
    create_endpoint(db_session, other.id, url=HOOK)
    job = new_job(db_session, tenant.id)
    finish_job(db_session, job.id, JobStatus.CANCELED)

    fan_out_all(db_session, tenant.id)

    assert fan_out_all(db_session, other.id) == []


def test_fan_out_takes_at_most_limit_events(db_session, tenant):
    fan_out(db_session, utcnow(), views=API_VIEWS, limit=10_000)  # what others left due
    create_endpoint(db_session, tenant.id, url=HOOK)
    for _ in range(3):
        finish_job(db_session, new_job(db_session, tenant.id).id, JobStatus.CANCELED)

    assert len(fan_out(db_session, utcnow(), views=API_VIEWS, limit=2)) == 2
    assert len(fan_out(db_session, utcnow(), views=API_VIEWS, limit=2)) == 1


# --- batch.completed ----------------------------------------------------------------


def new_batch(session, tenant_id, size):
    batch = Batch(id=new_batch_id(), tenant_id=tenant_id, job_count=size)
    session.add(batch)
    session.flush()
    rows = queue_jobs(session, tenant_id, [request() for _ in range(size)], batch_id=batch.id)
    return batch, [row["id"] for row in rows]


def batch_events(session, batch_id):
    return session.scalars(
        select(OutboxEvent).where(
            OutboxEvent.batch_id == batch_id, OutboxEvent.type == OutboxType.BATCH_COMPLETED
        )
    ).all()


def test_the_last_job_of_a_batch_to_end_writes_batch_completed_once(db_session, tenant):
    batch, (first, second) = new_batch(db_session, tenant.id, 2)

    finish_job(db_session, first, JobStatus.CANCELED)
    assert batch_events(db_session, batch.id) == []

    finish_job(
        db_session,
        second,
        JobStatus.FAILED,
        values={"error_code": "render_failed", "error_message": "x"},
    )
    assert len(batch_events(db_session, batch.id)) == 1
    db_session.refresh(batch)
    assert batch.completed_at is not None

    finish_job(db_session, second, JobStatus.CANCELED)  # a losing transition adds nothing
    assert len(batch_events(db_session, batch.id)) == 1


def test_batch_completed_carries_the_batch_as_the_api_shows_it(db_session, tenant):
    create_endpoint(db_session, tenant.id, url=HOOK)
    batch, (only,) = new_batch(db_session, tenant.id, 1)
    finish_job(db_session, only, JobStatus.CANCELED)

    messages = fan_out_all(db_session, tenant.id)

    (completed,) = [m for m in messages if m.event_type is OutboxType.BATCH_COMPLETED]
    assert completed.batch_id == batch.id
    assert completed.job_id is None
    data = completed.payload["data"]
    assert data == API_VIEWS.batch(db_session, batch)
    assert data["counts"]["canceled"] == 1
    assert data["object"] == "batch"


@pytest.fixture
def committed_batch(engine):
    """A committed tenant with a batch of two running jobs; removed afterwards."""
    with Session(engine) as session:
        tenant = create_tenant(session, "Concurrent batch")
        batch, job_ids = new_batch(session, tenant.id, 2)
        session.commit()
        tenant_id, batch_id = tenant.id, batch.id
    try:
        yield batch_id, job_ids
    finally:
        with Session(engine) as session:
            session.execute(delete(Tenant).where(Tenant.id == tenant_id))
            session.commit()


def test_two_last_jobs_ending_concurrently_complete_the_batch_exactly_once(engine, committed_batch):
    batch_id, (first, second) = committed_batch
    errors = []

    def finish_second():
        try:
            with Session(engine) as session:
                finish_job(session, second, JobStatus.CANCELED)
                session.commit()
        except Exception as exc:  # noqa: BLE001 (a thread's failure is asserted below)
            errors.append(exc)

    with Session(engine) as session:
        assert finish_job(session, first, JobStatus.CANCELED)
        # the first transaction is open and holds the batch: the second job ends now
        other = threading.Thread(target=finish_second)
        other.start()
        time.sleep(0.5)
        assert other.is_alive(), "the second finisher did not wait for the batch"
        session.commit()
    other.join(timeout=10)
    assert not errors

    with Session(engine) as session:
        assert len(batch_events(session, batch_id)) == 1
        assert session.get(Batch, batch_id).completed_at is not None


def test_finishers_that_updated_their_job_twice_do_not_deadlock(engine, committed_batch):
    # the pipeline renews its lease, then finishes: the second UPDATE of the job row in
    # one transaction checks the foreign key, which takes KEY SHARE on the batch row
    batch_id, (first, second) = committed_batch
    ours, theirs = Session(engine), Session(engine)
    try:
        ours.execute(text("SET lock_timeout = '5s'"))
        for session, job_id in ((ours, first), (theirs, second)):
            session.execute(update(Job).where(Job.id == job_id).values(updated_at=utcnow()))
            ended = {"status": JobStatus.CANCELED, "finished_at": utcnow()}
            session.execute(update(Job).where(Job.id == job_id).values(**ended))
        # the other transaction still holds its job live: not done yet, and no deadlock
        assert not complete_batch_if_done(ours, batch_id, now=utcnow())
        done: list[bool] = []
        other = threading.Thread(
            target=lambda: done.append(complete_batch_if_done(theirs, batch_id, now=utcnow()))
        )
        other.start()
        time.sleep(0.3)
        assert other.is_alive(), "the second finisher did not wait for the first"
        ours.commit()
        other.join(timeout=10)
        theirs.commit()
    finally:
        ours.close()
        theirs.close()
    assert done == [True]
    with Session(engine) as session:
        assert len(batch_events(session, batch_id)) == 1


# --- secrets ------------------------------------------------------------------------


def test_a_rotation_signs_with_both_secrets_until_the_overlap_ends(db_session, tenant):
    endpoint = create_endpoint(db_session, tenant.id, url=HOOK)
    old = endpoint.secret
    now = utcnow()
    new = rotate_endpoint_secret(db_session, endpoint, now=now, overlap_s=3600)
    message = WebhookMessage(endpoint_id=endpoint.id, tenant_id=tenant.id)

    assert new != old
    assert signing_secrets(db_session, message, now) == [new, old]
    assert signing_secrets(db_session, message, now + timedelta(hours=2)) == [new]


def test_the_tenant_secret_is_made_once_and_rotates_with_an_overlap(db_session, tenant):
    first = tenant_webhook_secret(db_session, tenant.id)
    assert tenant_webhook_secret(db_session, tenant.id) == first
    now = utcnow()
    second = rotate_tenant_secret(db_session, tenant.id, now=now, overlap_s=60)
    message = WebhookMessage(endpoint_id=None, tenant_id=tenant.id)

    assert signing_secrets(db_session, message, now) == [second, first]
    assert signing_secrets(db_session, message, now + timedelta(seconds=61)) == [second]


def test_the_first_rotation_of_a_tenant_without_a_secret_keeps_no_previous(db_session, tenant):
    secret = rotate_tenant_secret(db_session, tenant.id, now=utcnow(), overlap_s=60)
    db_session.refresh(tenant)
    assert tenant.webhook_secret == secret
    assert tenant.webhook_previous_secret is None


# --- enabling, disabling, replays ---------------------------------------------------


def test_delivery_disables_once_and_enabling_forgets_why(db_session, tenant):
    endpoint = create_endpoint(db_session, tenant.id, url=HOOK)
    endpoint.failing_since = utcnow()
    db_session.flush()

    assert disable_endpoint(db_session, endpoint.id, "410 Gone") is True
    assert disable_endpoint(db_session, endpoint.id, "410 Gone") is False
    db_session.refresh(endpoint)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "410 Gone")

    set_enabled(endpoint, True)
    assert (endpoint.enabled, endpoint.disabled_reason, endpoint.failing_since) == (
        True,
        None,
        None,
    )


def delivered_and_failed(session, tenant_id, endpoint_id):
    job = new_job(session, tenant_id)
    finish_job(session, job.id, JobStatus.CANCELED)
    fan_out_all(session, tenant_id)
    return session.scalars(
        select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id)
    ).all()


def test_a_replay_makes_the_same_message_due_now_as_a_replay(db_session, tenant):
    endpoint = create_endpoint(db_session, tenant.id, url=HOOK)
    (message,) = delivered_and_failed(db_session, tenant.id, endpoint.id)
    message.status = MessageStatus.FAILED
    message.next_attempt_at = None
    message.attempt_count = 10
    db_session.flush()
    now = utcnow()

    replay_message(db_session, message, now)

    db_session.refresh(message)
    assert message.status is MessageStatus.PENDING
    assert message.next_attempt_at == now
    assert message.next_attempt_trigger is AttemptTrigger.REPLAY
    with pytest.raises(ValueError, match="already pending"):
        replay_message(db_session, message, now)


def test_replay_failed_takes_only_the_endpoints_failed_messages_since(db_session, tenant):
    endpoint = create_endpoint(db_session, tenant.id, url=HOOK)
    other = create_endpoint(db_session, tenant.id, url=f"{HOOK}/other")
    for _ in range(3):
        finish_job(db_session, new_job(db_session, tenant.id).id, JobStatus.CANCELED)
    fan_out_all(db_session, tenant.id)
    messages = db_session.scalars(
        select(WebhookMessage).where(WebhookMessage.tenant_id == tenant.id)
    ).all()
    now = utcnow()
    old, recent, delivered = [m for m in messages if m.endpoint_id == endpoint.id]
    for message in messages:
        message.status = MessageStatus.FAILED
        message.next_attempt_at = None
    old.created_at = now - timedelta(days=2)
    delivered.status = MessageStatus.DELIVERED
    delivered.delivered_at = now
    db_session.flush()

    replayed = replay_failed(db_session, endpoint.id, since=now - timedelta(days=1), now=now)

    assert replayed == [recent.id]
    statuses = {
        m.id: m.status
        for m in db_session.scalars(
            select(WebhookMessage).where(WebhookMessage.endpoint_id == other.id)
        )
    }
    assert set(statuses.values()) == {MessageStatus.FAILED}


def test_deleting_an_endpoint_deletes_its_messages(db_session, tenant):
    endpoint = create_endpoint(db_session, tenant.id, url=HOOK)
    (message,) = delivered_and_failed(db_session, tenant.id, endpoint.id)
    db_session.delete(db_session.get(WebhookEndpoint, endpoint.id))
    db_session.flush()
    db_session.expunge_all()
    assert db_session.get(WebhookMessage, message.id) is None


def test_fan_out_and_batch_completion_work_on_sqlite(tmp_path):
    """The embedded mode: no ``FOR UPDATE`` there, the same results."""
    url = f"sqlite:///{tmp_path / 'reelyard.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            tenant = create_tenant(session, "Embedded")
            create_endpoint(session, tenant.id, url=HOOK)
            batch, (only,) = new_batch(session, tenant.id, 1)
            finish_job(session, only, JobStatus.CANCELED)
            session.commit()
            made = fan_out(session, utcnow(), views=API_VIEWS)
            session.commit()
            types = sorted(
                session.scalars(
                    select(WebhookMessage.event_type).where(WebhookMessage.id.in_(made))
                )
            )
            assert types == [OutboxType.BATCH_COMPLETED, OutboxType.JOB_CANCELED]
            assert session.get(Batch, batch.id).completed_at is not None
    finally:
        engine.dispose()
