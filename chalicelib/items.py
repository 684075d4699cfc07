"""The table's item shapes: every key, and the mapping between items and entities.

Only the store and its parts use this module (see docs/architecture.md#data-model):

  job          PK=JOB#<jobId>  SK=JOB
               GSI2 (overloaded) by owner: GSI2PK=USER#<owner>       GSI2SK=JOB#<jobId>
               GSI4 dueJobs (sparse):      GSI4PK=DUE#<shard>        GSI4SK=<startsAt> while OPEN,
                                                                     <endsAt> while CLOSED
  listing      PK=JOB#<jobId>  SK=LISTING  (a copy of the job while OPEN; expiresAt = startsAt: TTL)
               GSI3 openJobs:              GSI3PK=JOBS#OPEN#<shard>  GSI3SK=JOB#<jobId>
  application  PK=JOB#<jobId>  SK=APPLICATION#<applicationId>
               GSI1 jobApplications:       GSI1PK=JOB#<jobId>        GSI1SK=APPLICATION#<applicationId>
                                           (keys only: a decline writes no copy of it)
               GSI2 by applicant:          GSI2PK=APPLICANT#<user>   GSI2SK=APPLICATION#<applicationId>
  guard        PK=JOB#<jobId>  SK=APPLICANT#<user>    (one application per nanny, job and round)
  calendar     PK=NANNY#<user> SK=CALENDAR  version, and B#<jobId>={startsAt, endsAt} per booking
  idempotency  PK=USER#<owner> SK=IDEMPOTENCY#<sha256 of the key>   (expiresAt: the table's TTL)
  mail receipt PK=MAIL#<eventId> SK=TO#<owner|applicant>          (expiresAt: the table's TTL)

A job and its applications share one partition, so one strongly consistent Query
reads them all: nothing that must see its own writes depends on an index.
Ids are ULIDs, so sorting by id sorts by creation time. The open jobs are spread over
``OPEN_JOB_SHARDS`` index partitions (one partition key serves at most 1,000 writes
and 3,000 reads per second); ``shards.py`` merges them back into one newest-first listing.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.domain import Application, ApplicationStatus, Job, JobStatus, Reason, Slot
from chalicelib.events import APPLICATION, JOB, EntityState

JOB_APPLICATIONS_INDEX = "jobApplications"
# GSI2 is overloaded: applications by applicant, and jobs by owner.
BY_USER_INDEX = "applicantApplications"
OPEN_JOBS_INDEX = "openJobs"
DUE_JOBS_INDEX = "dueJobs"
DUE_PARTITION_PREFIX = "DUE#"
CALENDAR_SORT = "CALENDAR"
SLOT_PREFIX = "B#"

OPEN_PARTITION_PREFIX = "JOBS#OPEN#"
# Changing it moves jobs between shards: re-key the open jobs first
# (docs/architecture.md#the-open-jobs-listing-sharded).
OPEN_JOB_SHARDS = 8
JOB_SORT = "JOB"
LISTING_SORT = "LISTING"
APPLICATION_PREFIX = "APPLICATION#"
JOB_PREFIX = "JOB#"

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def job_partition(job_id: str) -> str:
    return f"JOB#{job_id}"


def job_sort(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def application_sort(application_id: str) -> str:
    return f"{APPLICATION_PREFIX}{application_id}"


def application_id_of(sort_key: str) -> str:
    """The application id in an application's sort key (``application_sort``'s inverse)."""
    return sort_key.removeprefix(APPLICATION_PREFIX)


def open_shard(job_id: str) -> int:
    """The job's shard of the open-jobs listing: stable, and even over random ids."""
    return zlib.crc32(job_id.encode("ascii")) % OPEN_JOB_SHARDS


def open_partition(shard: int) -> str:
    return f"{OPEN_PARTITION_PREFIX}{shard}"


def job_id_of_sort(sort_key: str) -> str:
    return sort_key.removeprefix(JOB_PREFIX)


def owner_partition(user: str) -> str:
    return f"USER#{user}"


def applicant_partition(user: str) -> str:
    return f"APPLICANT#{user}"


def due_partition(job_id: str) -> str:
    """Spread like the listing: one index partition takes at most 1,000 writes a second."""
    return f"{DUE_PARTITION_PREFIX}{open_shard(job_id)}"


def due_at(job: Job) -> str | None:
    """When the scheduled settling must look at the job: its start while OPEN, its end while CLOSED."""
    if job.status is JobStatus.OPEN:
        return job.starts_at
    if job.status is JobStatus.CLOSED:
        return job.ends_at
    return None


def calendar_key(user: str) -> dict[str, Any]:
    return key(f"NANNY#{user}", CALENDAR_SORT)


def slot_attribute(job_id: str) -> str:
    return f"{SLOT_PREFIX}{job_id}"


def calendar_from(item: dict[str, Any] | None) -> tuple[int, list[Slot]]:
    """A raw calendar item: its version (0 when absent) and its bookings."""
    if not item:
        return 0, []
    slots = [
        Slot(name.removeprefix(SLOT_PREFIX), value["M"]["startsAt"]["S"], value["M"]["endsAt"]["S"])
        for name, value in item.items()
        if name.startswith(SLOT_PREFIX)
    ]
    return int(item["version"]["N"]), slots


def slot_value(slot: Slot) -> dict[str, Any]:
    return {"M": {"startsAt": string(slot.starts_at), "endsAt": string(slot.ends_at)}}


def string(value: str) -> dict[str, str]:
    """A DynamoDB string attribute value."""
    return {"S": value}


s = string  # the short name mail_store.py uses


def key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"PK": string(pk), "SK": string(sk)}


def primary_key(item: dict[str, Any]) -> tuple[str, str]:
    """An item's (or a key's) partition and sort key, as a value to look items up by."""
    return item["PK"]["S"], item["SK"]["S"]


def job_key(job_id: str) -> dict[str, Any]:
    return key(job_partition(job_id), JOB_SORT)


def application_key(job_id: str, application_id: str) -> dict[str, Any]:
    return key(job_partition(job_id), application_sort(application_id))


def listing_key(job_id: str) -> dict[str, Any]:
    return key(job_partition(job_id), LISTING_SORT)


def open_listing_key(job_id: str) -> dict[str, Any]:
    """The full openJobs index key of a job's listing entry (an ExclusiveStartKey)."""
    return {
        **listing_key(job_id),
        "GSI3PK": string(open_partition(open_shard(job_id))),
        "GSI3SK": string(job_sort(job_id)),
    }


def guard_key(job_id: str, user: str) -> dict[str, Any]:
    return key(job_partition(job_id), f"APPLICANT#{user}")


def idempotency_key(owner: str, client_key: str) -> dict[str, Any]:
    # Hashed: the client's key is free text and must not shape ours.
    digest = hashlib.sha256(client_key.encode("utf-8")).hexdigest()
    return key(owner_partition(owner), f"IDEMPOTENCY#{digest}")


def serialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _SERIALIZER.serialize(v) for k, v in item.items() if v is not None}


def deserialize(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def job_item(job: Job) -> dict[str, Any]:
    item: dict[str, Any] = {
        "PK": job_partition(job.job_id),
        "SK": JOB_SORT,
        "GSI2PK": owner_partition(job.owner),
        "GSI2SK": job_sort(job.job_id),
        "type": "JOB",
        "jobId": job.job_id,
        "owner": job.owner,
        "status": job.status.value,
        "title": job.title,
        "startsAt": job.starts_at,
        "endsAt": job.ends_at,
        "createdAt": job.created_at,
        "description": job.description,
        "hourlyRate": job.hourly_rate,
        "location": job.location,
        "acceptedApplicationId": job.accepted_application_id,
        "closedAt": job.closed_at,
        "cancelledAt": job.cancelled_at,
        "cancelReason": job.cancel_reason,
        "ownerName": job.owner_name,
        "ownerEmail": job.owner_email,
        "expiredAt": job.expired_at,
        "completedAt": job.completed_at,
        "acceptedApplicant": job.accepted_applicant,
        "round": job.round or None,
    }
    due = due_at(job)
    if due is not None:
        item.update(GSI4PK=due_partition(job.job_id), GSI4SK=due)
    return item


def listing_item(job: Job) -> dict[str, Any]:
    """The job's entry in openJobs, written with it and deleted when it closes or is cancelled.

    A separate item, so that TTL can drop it once the job starts (``expiresAt``)
    while the job itself stays; reads filter out what TTL has not deleted yet.
    """
    item = {k: v for k, v in job_item(job).items() if not k.startswith("GSI")}
    item.update(
        SK=LISTING_SORT,
        type="JOB_LISTING",
        GSI3PK=open_partition(open_shard(job.job_id)),
        GSI3SK=job_sort(job.job_id),
        expiresAt=int(datetime.fromisoformat(job.starts_at).timestamp()),
    )
    return item


def job_from(item: dict[str, Any]) -> Job:
    rate = item.get("hourlyRate")
    return Job(
        job_id=item["jobId"],
        owner=item["owner"],
        status=JobStatus(item["status"]),
        title=item["title"],
        starts_at=item["startsAt"],
        ends_at=item["endsAt"],
        created_at=item["createdAt"],
        description=item.get("description"),
        hourly_rate=Decimal(rate) if rate is not None else None,
        location=item.get("location"),
        accepted_application_id=item.get("acceptedApplicationId"),
        closed_at=item.get("closedAt"),
        cancelled_at=item.get("cancelledAt"),
        cancel_reason=item.get("cancelReason"),
        owner_name=item.get("ownerName"),
        owner_email=item.get("ownerEmail"),
        expired_at=item.get("expiredAt"),
        completed_at=item.get("completedAt"),
        accepted_applicant=item.get("acceptedApplicant"),
        round=int(item.get("round") or 0),
    )


def application_item(app: Application) -> dict[str, Any]:
    return {
        "PK": job_partition(app.job_id),
        "SK": application_sort(app.application_id),
        "GSI1PK": job_partition(app.job_id),
        "GSI1SK": application_sort(app.application_id),
        "GSI2PK": applicant_partition(app.applicant),
        "GSI2SK": application_sort(app.application_id),
        "type": "APPLICATION",
        "applicationId": app.application_id,
        "jobId": app.job_id,
        "applicant": app.applicant,
        "status": app.status.value,
        "createdAt": app.created_at,
        "updatedAt": app.updated_at,
        "message": app.message,
        "applicantName": app.applicant_name,
        "applicantEmail": app.applicant_email,
        "reason": app.reason.value if app.reason else None,
    }


def application_from(item: dict[str, Any]) -> Application:
    return Application(
        application_id=item["applicationId"],
        job_id=item["jobId"],
        applicant=item["applicant"],
        status=ApplicationStatus(item["status"]),
        created_at=item["createdAt"],
        updated_at=item["updatedAt"],
        message=item.get("message"),
        applicant_name=item.get("applicantName"),
        applicant_email=item.get("applicantEmail"),
        reason=Reason(item["reason"]) if item.get("reason") else None,
    )


def guard_item(app: Application, round_: int = 0) -> dict[str, Any]:
    return {
        **{k: v["S"] for k, v in guard_key(app.job_id, app.applicant).items()},
        "type": "APPLICATION_GUARD",
        "applicationId": app.application_id,
        "round": round_,
    }


def idempotency_item(owner: str, client_key: str, fingerprint: str, job_id: str, expires_at: int) -> dict[str, Any]:
    return {
        **{k: v["S"] for k, v in idempotency_key(owner, client_key).items()},
        "type": "IDEMPOTENCY_KEY",
        "fingerprint": fingerprint,
        "jobId": job_id,
        "expiresAt": expires_at,
    }


# ------------------------------------------------------------ stream images

# A job's own time of each change: the latest of these (ISO strings sort as times).
_JOB_CHANGE_TIMES = ("createdAt", "updatedAt", "closedAt", "cancelledAt", "expiredAt", "completedAt", "reopenedAt")


def state_of(image: dict[str, Any] | None) -> EntityState | None:
    """A stream image (DynamoDB JSON) as a job or an application; None for any other item.

    Reads attributes by name rather than through ``job_from``/``application_from``, so that
    a status or field this code does not know yet still makes an event.
    """
    if not image:
        return None
    kind = image.get("type", {}).get("S")
    if kind not in ("JOB", "APPLICATION"):
        return None
    item = deserialize(image)
    if kind == "JOB":
        times = [str(item[name]) for name in _JOB_CHANGE_TIMES if item.get(name)]
        return EntityState(
            kind=JOB,
            job_id=str(item["jobId"]),
            status=str(item["status"]),
            owner=str(item["owner"]),
            changed_at=max(times) if times else None,
        )
    return EntityState(
        kind=APPLICATION,
        job_id=str(item["jobId"]),
        application_id=str(item["applicationId"]),
        status=str(item["status"]),
        applicant=str(item["applicant"]),
        reason=item.get("reason"),
        changed_at=item.get("updatedAt") or item.get("createdAt"),
    )


# ------------------------------------------------------------- mail receipts


def mail_receipt_key(event_id: str, recipient: str) -> dict[str, Any]:
    """One email per event and recipient role: the key the mailer's conditional put claims."""
    return key(f"MAIL#{event_id}", f"TO#{recipient}")
