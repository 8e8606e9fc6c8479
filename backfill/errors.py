"""Every error backfill raises on purpose, written for the person running it.

The tree::

    BackfillError                 a problem the user can fix; the CLI prints it and exits 2
     ├── UsageError               an option or environment value that cannot work
     ├── SourceError              the orders file: missing, unknown format, unreadable
     ├── MappingError             the YAML mapping: syntax, keys, types, columns, filter
     ├── ReportError              a failure report that cannot be read back
     ├── JournalError             an unfinished or foreign journal stands in the way
     ├── RecordWriteError         the report or journal cannot be written (disk full...):
     │                            the run stops; the CLI exits 3
     └── SendError                talking to the events endpoint
          ├── EndpointRefused     every further row would fail the same way: the run stops
          │    ├── AuthRejected         401/403: the key is refused
          │    ├── RedirectRefused      3xx: the endpoint is wrong (never followed)
          │    └── CertificateRejected  TLS: the server's certificate does not verify
          ├── EventRejected       4xx: this event is invalid; never retried
          └── TransientSendError  worth another try: 408/425/429, 5xx, timeouts, resets
               ├── RateLimited    the server asked us to slow down (may carry Retry-After)
               └── AnswerLost     the request left, no answer came: it may have been applied

Row-level problems (a value that does not convert, a rejected event) are not raised
through the pipeline: they become entries of the failure report, so one bad row never
stops a run. Retry decisions look at the class, never at the message text.
"""

from __future__ import annotations


class BackfillError(Exception):
    """Base of every error that is the user's to fix (exit code 2 in the CLI)."""


class UsageError(BackfillError):
    """An option, argument or environment variable that cannot work."""


class SourceError(BackfillError):
    """The orders file cannot be opened or read."""


class MappingError(BackfillError):
    """The mapping file is malformed or does not fit the source."""


class ReportError(BackfillError):
    """A failure report given to `rerun` cannot be read."""


class JournalError(BackfillError):
    """A journal from an earlier run decides what this run may do."""


class RecordWriteError(BackfillError):
    """The report or the journal could not be written: the run stops, the files consistent."""


class SendError(BackfillError):
    """A request to the events endpoint did not end in acceptance."""

    def __init__(self, message: str, *, status: int | None = None, kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind or (f"http {status}" if status is not None else "error")


class EndpointRefused(SendError):
    """An answer that every further row would meet too: stop the whole run at once."""


class AuthRejected(EndpointRefused):
    """The server refused the API key: stop the whole run."""


class RedirectRefused(EndpointRefused):
    """A 3xx: following it would carry the key elsewhere and deliver nothing."""


class CertificateRejected(EndpointRefused):
    """The server's TLS certificate does not verify: a wrong host or an untrusted CA."""


class EventRejected(SendError):
    """The server judged this one event invalid: report it, do not retry."""


class TransientSendError(SendError):
    """A failure that another attempt may not repeat; `retry_after` is in seconds when the
    server said how long to wait (a 503 may, as a 429 does)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        kind: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, kind=kind)
        self.retry_after = retry_after


class RateLimited(TransientSendError):
    """The server asked to slow down (408, 425, 429)."""


class AnswerLost(TransientSendError):
    """The request was written but no readable answer came back (a timeout, a dropped
    connection, garbage): the server may have applied the event, so a retry may duplicate
    it. A request that provably never left (refused, failed before writing) is not this."""
