"""Where higher apps plug into privacy work: export, erasure, retention.

Consent is below events, segments and the rest (DESIGN.md), so it cannot import
them; they fill these registries in their ``AppConfig.ready()`` (events do so
in their privacy module). Each is an ``apps.common.registry.Registry``: names are
unique (a second registration of a name raises ``RegistryError``) and entries run
in the registry's order (``order``, then name). A name is also the key of the
entry's count in the erasure's proof or the retention purge's result, so it names
what was deleted ("events", "segment_memberships"). Tests register through
``tests.registry.registered``; production code never unregisters.

Registries:

* ``personal_data_providers``: a person's tables in her export (access and
  portability requests). ``fn(profile_ids) -> list[dict]``, the rows
  (JSON-serializable), read outside any transaction of ours; a failure fails the
  export. The name is the table's name in the archive. Consent's own tables
  come first; see ``EXPORT_TABLE_ORDER`` for where a provider's ``order`` puts
  its table among them.
* ``personal_data_erasers``: ``PersonalDataEraser`` entries that delete a
  person's rows from the app's tables when she is erased (see there, and
  ``ErasedPerson`` for what an eraser is told about her).
* ``pending_sweepers``: ``fn() -> int`` deletes, whoever they belong to, the rows
  accepted but not processed yet that carry a suppressed identifier (accepted
  before the person's identifiers were suppressed, they would otherwise rebuild
  her when processed); the number deleted. Run by the erasure's identity and
  finish steps, in their transaction; must be idempotent; a failure fails the
  step (retried). Counted under its name in the proof.
* ``deletion_hooks``: export destinations delete the person on their side too.
  ``fn(identifiers) -> str`` returning "ok" or "not_applicable" (raising on
  failure), where ``identifiers`` is a list of ``(type, value as sent)``. Called
  in the erasure's hooks step; a failure is retried with backoff
  (CDP_ERASURE_HOOK_RETRY_DELAYS); after the last attempt the request completes
  "with failures", shown in admin.
* ``retention_purgers``: ``RetentionPurger`` entries that delete what is older
  than a retention setting, in batches (see there).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from apps.common.registry import Registry


@dataclass(frozen=True, slots=True)
class ErasedPerson:
    """Who is being erased, as an eraser needs to find her rows.

    A person is a profile and every profile merged into it. Her rows are found by
    profile id where they have one; rows not tied to a profile yet (events not
    processed) or naming her in free text (a refused payload) are found by the ids
    she sent, which may differ from their normalized form ("  Ivy-1 " as sent,
    "ivy-1" stored).
    """

    # The profiles of her tree: the survivor and every profile merged into it.
    profile_ids: tuple[uuid.UUID, ...]
    # Her identifiers as identity stores them: (type, normalized value).
    identifiers: tuple[tuple[str, str], ...]
    # Her user ids and anonymous ids, as sent and as normalized (both forms).
    user_ids: tuple[str, ...]
    anonymous_ids: tuple[str, ...]
    # Every value that names her in text: each identifier as stored and as sent,
    # and the request's subject (even if no profile knows it).
    texts: tuple[str, ...]


class EraseFn(Protocol):
    def __call__(self, person: ErasedPerson, *, batch_size: int) -> int: ...


EraseStep = Literal["events", "rejected", "local"]


@dataclass(frozen=True, slots=True)
class PersonalDataEraser:
    """What an app deletes when a person is erased.

    ``erase(person, *, batch_size) -> int`` deletes at most ``batch_size`` of the
    person's rows and returns how many it deleted; the erasure calls it again
    until it returns 0. Each call of a step runs in that step's transaction (the
    erasure's ``select_for_update`` of the request, apps/consent/services/
    erasure.py): one batch per transaction in the ``step`` it is registered for,
    so a large table holds no long locks and a crash resumes after the last
    committed batch; the profiles still exist (identity deletes them last), so
    foreign keys to them resolve. An eraser must be idempotent: a step may run
    again after a crash, and rows already gone are simply not found. A failure
    raises: the step's transaction rolls back, the failure is recorded on the
    request, the step is retried (the task's retry, the stalled-erasure sweep,
    at most ``MAX_STEP_FAILURES`` times in a row, then an administrator's
    "Resume erasure"), and the erasure does not complete without it.

    ``step``: the erasure step that runs it, in the order of ``STEPS``:
    "events" (the behavioural records, first and in batches), "rejected" (refused
    payloads that name the person), or "local" (everything else: segment
    memberships and their history...). The step names are the checkpoints saved
    in requests in progress, so they stay as they were when events' erasure was
    written into consent.

    ``batched=False``: the eraser does its whole work in one statement (a table
    without an index to batch by, where a second call would cost a second scan),
    so it is called once per run of its step, its return value being a count only.

    ``meanwhile=True``: the app may write rows of the person while the erasure
    runs (a worker processing her pending events attaches them to her profile);
    the identity step runs it again, after the pending sweep, until it returns 0.
    Every eraser of the "events" and "local" steps runs again there anyway if
    profiles were merged into hers since the erasure collected them. There, all
    its batches run in the identity step's one transaction (which then deletes
    the profiles): the rows found are those a worker wrote in the meantime, few.
    """

    erase: EraseFn
    step: EraseStep = "local"
    batched: bool = True
    meanwhile: bool = False


class PurgeFn(Protocol):
    def __call__(self, *, cutoff: datetime, batch_size: int) -> int: ...


@dataclass(frozen=True, slots=True)
class RetentionPurger:
    """What an app deletes when it is older than its retention.

    ``purge(*, cutoff, batch_size) -> int`` deletes at most ``batch_size`` rows
    older than ``cutoff`` and returns how many; it is called again while it
    returns a full batch. Each call is its own transaction (autocommit, or its
    own ``atomic``), so a long purge holds no long locks and resumes where it
    stopped; a failure raises and ends the purge (the next periodic run goes on).
    ``days_setting`` names the retention in ``settings.CDP`` (read at each
    purge); 0 or unset keeps forever.
    """

    purge: PurgeFn
    days_setting: str


Provider = Callable[[Sequence[uuid.UUID]], list[dict[str, Any]]]
PendingSweeper = Callable[[], int]
DeletionHook = Callable[[Sequence[tuple[str, str]]], str]

# Where consent's own tables sit in an export among the providers' (by order):
# a provider that says nothing (order 0) comes after them, as before.
EXPORT_TABLE_ORDER = {"profile": -50, "identifiers": -40, "consent": -20, "merges": -10}

personal_data_providers: Registry[Provider] = Registry("consent.personal_data_providers")
personal_data_erasers: Registry[PersonalDataEraser] = Registry("consent.personal_data_erasers")
pending_sweepers: Registry[PendingSweeper] = Registry("consent.pending_sweepers")
deletion_hooks: Registry[DeletionHook] = Registry("consent.deletion_hooks")
retention_purgers: Registry[RetentionPurger] = Registry("consent.retention_purgers")
