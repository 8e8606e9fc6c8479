"""Where events go and with which key: the endpoint, the envelope, the key and the policy.

The key is a secret: it goes into its header and nowhere else, so it is left out of the
repr, and `scrub` takes it out of any text a server sends back. A `Target` checks itself
when it is made, so the library refuses what the CLI refuses: a key that cannot go in a
header, and plain http to another machine (the key would travel in clear text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backfill.books.journal import SANDBOX_ENDPOINT
from backfill.books.report import MIN_SECRET_LENGTH
from backfill.errors import UsageError
from backfill.mapping.envelopes import Api
from backfill.send import endpoint as send_endpoint
from backfill.send.sender import SendPolicy

MAX_MESSAGE_CHARS = 500  # a server's message, cut after the key is scrubbed from all of it
API_KEY_ENV = "TORQUE_API_KEY"


@dataclass(frozen=True)
class Target:
    """Where and how events go. `rehearsal`: a local sandbox, whose records stay apart."""

    api: Api
    endpoint: str
    api_key: str = field(repr=False)
    policy: SendPolicy = field(default_factory=SendPolicy)
    allow_insecure: bool = False
    rehearsal: bool = False

    def __post_init__(self) -> None:
        check_key(self.api_key)
        check_endpoint(self.endpoint, self.allow_insecure)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", self.api.key_header: self.api_key}

    @property
    def bound_to(self) -> str:
        """What the run's journal is bound to: the endpoint, or "sandbox" for rehearsals
        (whose port changes from run to run)."""
        return SANDBOX_ENDPOINT if self.rehearsal else self.endpoint

    def scrub(self, text: str) -> str:
        """A server may echo the API key in its message: keep it out of summary and files."""
        if len(self.api_key) >= MIN_SECRET_LENGTH:
            text = text.replace(self.api_key, "[redacted]")
        return text[:MAX_MESSAGE_CHARS]


def check_key(key: str) -> None:
    """A key that is empty or cannot go in an HTTP header; never shown, not even a part."""
    if not key:
        raise UsageError(
            f"{API_KEY_ENV} is not set: export your Torque API key, or add --sandbox "
            "to rehearse against a local sandbox."
        )
    if not all("!" <= char <= "~" for char in key):
        raise UsageError(
            f"{API_KEY_ENV} holds a space, line break or other character that cannot go in "
            "an HTTP header (a newline left from a file?); set it to the key alone."
        )


def check_endpoint(endpoint: str, allow_insecure: bool) -> None:
    """See `backfill.send.endpoint.check_endpoint`: the one place of the rule."""
    send_endpoint.check_endpoint(endpoint, allow_insecure)
