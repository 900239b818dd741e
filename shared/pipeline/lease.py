"""The run lease: one reconcile acts on a run at a time, and a crash frees the run in seconds.

A reconcile may take a while (a smoke test posts several prompts, each with
its own timeout), and the process running it may die at any moment (a host
recycled, scaled in, or killed). A lease as long as the longest step would
freeze a crashed owner's run for that long; a short lease alone would lapse
under a live, slow step and let a second reconcile act on the run at the same
time. So the lease is short (``LEASE_SECONDS``) and the owner keeps it alive
with a heartbeat: a daemon thread renews it every ``LEASE_SECONDS /
RENEWALS_PER_LEASE`` seconds while the step works.

The protocol, all writes compare-and-swap on the run's ETag:

1. **Take** (``take``): write ``lease_owner`` and ``lease_until = now +
   LEASE_SECONDS`` over the version just read (by ``Ledger.get``, or as the
   sweep listed it: ``Ledger.active``'s versions swap the same way), if no
   other owner's lease is still running (the caller checks
   ``Run.leased_by_other``).
2. **Hold** (``Heartbeat``): renew over the newest version this lease wrote (the
   take's, then the previous renewal's), moving ``lease_until`` forward.
3. **Give back**: the step stops the heartbeat, then saves its result, with the
   lease cleared, over ``Heartbeat.newest()``.

Invariants (the tests in ``tests/integration/test_reconcile_lease.py`` hold
these up):

- **I1. Renewals change nothing but ``lease_until``.** The newest version
  differs from the one the step read only there, so the step's result
  (computed from what it read) is saved over it without undoing anyone's
  change, and the final save does not lose its CAS to its own heartbeat.
- **I2. Nobody is overwritten.** A renewal never re-reads: if the run changed
  under it (a cancel or retry request, a reconcile that took an expired lease
  over), the renewal loses its race, the lease is lost for good and the step
  saves nothing (``newest()`` raises ``LeaseLost``); the other writer's change
  stands. The reconcile re-reads and starts over, which is safe because every
  action is idempotent (names derive from the run id; look before create).
- **I3. No renewal in flight after ``stop()``.** ``stop()`` joins the thread; if
  a renewal is still stuck after ``LEASE_SECONDS`` the version is unknown and
  the lease counts as lost (I2 again: nothing saved, nothing overwritten).
- **I4. Act only while held.** ``check()`` before acting on Azure raises
  ``LeaseLost`` once a renewal lost its race or the lease ran out by this
  process's clock (renewals failing for a whole lease): a step that outlived
  its lease drops its decision rather than act alongside the next owner. (A
  renewal that succeeds after the lease ran out is still safe: its CAS proves
  nobody wrote the run meanwhile, so nobody took the lease over.)
- **I5. A dead owner writes nothing more.** Its lease lapses at most
  ``LEASE_SECONDS`` after its last renewal; the next reconcile after that (the
  timer's, within a minute in Azure) takes the run over.
- **I6. Looks without a lease act on nothing.** The sweep may read Azure before it
  takes the lease (``reconcile_listed``); it acts only after taking it, on a
  fresh look, and a look that only records what it saw is saved over the
  version it listed without a lease: a compare-and-swap like any write here,
  so it never lands over a lease taken or renewed meanwhile (I2 holds), and a
  run held by a live lease is not looked at.

Timing: with 15 s and a renewal every 5 s, a lease has 10 s of slack: a
failed renewal is tried again every ``RETRY_SECONDS`` until one lands, so a
slow Table request, a pause of the process or some clock skew between
instances costs a live step nothing, and a crash holds the run up for 15 s at
most. A renewal whose answer is lost (it may have been written) makes the next
one lose its race: the lease is lost, spuriously but safely (I2), and the step
is done again. Clocks: ``lease_until`` is written with the owner's clock and
read with others', so skew lengthens or shortens a lease by that much. Safety
never depends on clocks, only on the CAS (I2): clocks decide at most when work
may be repeated, and repeated work is idempotent.

Not a setting: the one trade-off (recovery time against tolerance of stalls)
does not vary between deployments, and in Azure the timer that picks a
crashed run up again fires once a minute, so a shorter lease would not bring
recovery much sooner there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from types import TracebackType

from shared.domain.errors import AutopilotError, ConcurrencyConflict
from shared.domain.ledger import Ledger, StoredRun

log = logging.getLogger(__name__)

LEASE_SECONDS = 15.0  # how long a lease runs without renewal: the longest a crash holds a run
RENEWALS_PER_LEASE = 3  # renewals per lease length: 10 s of slack for a slow or failed one
RETRY_SECONDS = 1.0  # after a renewal failed (not lost): try again this soon

Clock = Callable[[], dt.datetime]


class LeaseLost(ConcurrencyConflict):
    """The run changed under this lease, or the lease ran out: the step saves nothing."""


def take(
    ledger: Ledger,
    stored: StoredRun,
    owner: str,
    now: dt.datetime,
    seconds: float | None = None,
) -> StoredRun:
    """Lease ``stored`` to ``owner`` until ``now`` + ``seconds`` (default ``LEASE_SECONDS``).

    Compare-and-swap on ``stored``'s version: raises ``ConcurrencyConflict`` if the
    run changed since it was read. Whether another owner still holds it is the
    caller's question (``Run.leased_by_other``), asked of the same read.
    """
    length = LEASE_SECONDS if seconds is None else seconds
    run = dataclasses.replace(
        stored.run, lease_owner=owner, lease_until=now + dt.timedelta(seconds=length)
    )
    return ledger.replace(stored, run)


class Heartbeat:
    """Keeps a taken lease alive from a daemon thread while the step works.

    Use as a context manager around the work (the thread stops on the way out,
    however the work ends), then save over ``newest()``; call ``check()`` before
    acting on Azure. The ledger must be safe to call from two threads at once (the
    Table adapter already is, for the sweep's worker threads).
    """

    def __init__(
        self,
        ledger: Ledger,
        leased: StoredRun,
        clock: Clock,
        lease_seconds: float | None = None,
        renew_seconds: float | None = None,
    ) -> None:
        if leased.run.lease_until is None or not leased.run.lease_owner:
            raise ValueError(f"run {leased.run.run_id} is not leased")
        self._ledger = ledger
        self._clock = clock
        self._lease_seconds = LEASE_SECONDS if lease_seconds is None else lease_seconds
        self._renew_seconds = (
            self._lease_seconds / RENEWALS_PER_LEASE if renew_seconds is None else renew_seconds
        )
        self._lock = threading.Lock()  # guards the three fields below
        self._newest = leased
        self._expires: dt.datetime = leased.run.lease_until
        self._lost = ""  # why the lease is lost; "" while held
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{leased.run.run_id}", daemon=True
        )

    # -- the step's side ----------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; returns once no renewal is in flight (or counts the lease lost)."""
        self._stopping.set()
        if not self._thread.is_alive():
            return
        self._thread.join(timeout=self._lease_seconds)
        if self._thread.is_alive():  # a renewal stuck in the network: its outcome is unknown
            self._lose("a renewal did not finish in time; the run's version is unknown")

    @property
    def held(self) -> bool:
        """Not lost to another writer, and not run out by this process's clock."""
        with self._lock:
            return not self._lost and self._clock() < self._expires

    def check(self) -> None:
        """Raise ``LeaseLost`` unless the lease is held (invariant I4)."""
        with self._lock:
            lost, expires, run_id = self._lost, self._expires, self._newest.run.run_id
        if not lost and self._clock() >= expires:
            lost = f"the lease ran out at {expires.isoformat()} without a renewal"
        if lost:
            raise LeaseLost(f"run {run_id}: lease lost ({lost}); not acting")

    def newest(self) -> StoredRun:
        """The newest version this lease wrote, to save the step's result over.

        Call after ``stop()``. Raises ``LeaseLost`` if another writer changed the run
        (the step must not overwrite it, invariant I2).
        """
        if not self._stopping.is_set():
            raise RuntimeError("stop the heartbeat before saving over its newest version")
        with self._lock:
            if self._lost:
                raise LeaseLost(f"run {self._newest.run.run_id}: lease lost ({self._lost})")
            return self._newest

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the thread's side --------------------------------------------------------------

    def _beat(self) -> None:
        wait = self._renew_seconds
        while not self._stopping.wait(wait):
            renewed = self._renew()
            if renewed is None:
                return
            wait = self._renew_seconds if renewed else min(RETRY_SECONDS, self._renew_seconds)

    def _renew(self) -> bool | None:
        """One renewal: True if renewed, False if it failed (try again soon), None once
        the lease is lost (nothing more to renew)."""
        with self._lock:
            if self._lost:
                return None
            current = self._newest
        until = self._clock() + dt.timedelta(seconds=self._lease_seconds)
        try:
            renewed = self._ledger.replace(
                current, dataclasses.replace(current.run, lease_until=until)
            )
        except ConcurrencyConflict:
            self._lose("the run changed since this lease last wrote it")
            return None
        except AutopilotError as exc:  # transient: try again soon
            log.warning("run %s: lease not renewed (%s); trying again", current.run.run_id, exc)
            return False
        except Exception:  # a bug must not end the heartbeat silently; the lease runs out
            log.exception("run %s: unexpected error renewing the lease", current.run.run_id)
            return False
        with self._lock:
            if self._lost:  # stop() gave up on this renewal: its version must not be used
                return None
            self._newest, self._expires = renewed, until
        return True

    def _lose(self, why: str) -> None:
        with self._lock:
            if not self._lost:
                self._lost = why
                log.warning("run %s: lease lost: %s", self._newest.run.run_id, why)
