"""Where events go and with which key: the endpoint, the envelope, the key and the policy.

The key is a secret: it goes into its header and nowhere else, so it is left out of the
repr, and `scrub` takes it out of any text a server sends back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backfill.api import Api
from backfill.report import MIN_SECRET_LENGTH
from backfill.sender import SendPolicy

MAX_MESSAGE_CHARS = 500  # a server's message, cut after the key is scrubbed from all of it


@dataclass(frozen=True)
class Target:
    """Where and how events go."""

    api: Api
    endpoint: str
    api_key: str = field(repr=False)
    policy: SendPolicy = field(default_factory=SendPolicy)

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", self.api.key_header: self.api_key}

    def scrub(self, text: str) -> str:
        """A server may echo the API key in its message: keep it out of summary and files."""
        if len(self.api_key) >= MIN_SECRET_LENGTH:
            text = text.replace(self.api_key, "[redacted]")
        return text[:MAX_MESSAGE_CHARS]
