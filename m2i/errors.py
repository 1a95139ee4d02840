"""The error tree of m2i.

Every error a user can cause is an :class:`M2IError` whose message is one clear sentence naming
the thing and the fix. The CLI and the TUI print ``str(exc)`` and exit non-zero; they never show a
traceback for these. Third-party errors are translated with ``raise ... from exc``.

- ``M2IError``
  - ``InputError``     bad audio, bad file, bad argument
  - ``StoreError``     database missing, not an m2i database, newer schema, read-only
    - ``OlderSchemaError``  an older schema that this open may not upgrade (read-only, ``upgrade=False``)
  - ``ProviderError``  LLM provider: missing/rejected key, unreachable server, unknown model
  - ``BackendError``   image backend: missing weights, unwritable output, out of memory
  - ``ConfigError``    bad m2i.toml or M2I_* value
"""

from __future__ import annotations


class M2IError(Exception):
    """Root of every error m2i raises on purpose."""


class InputError(M2IError):
    """Bad input a user supplied (audio, files, arguments)."""


class StoreError(M2IError):
    """The run store cannot be opened or used."""


class OlderSchemaError(StoreError):
    """The database has an older schema than this m2i, and this open may not upgrade it.

    Raised by :func:`m2i.store.open_store` when the database's Alembic revision is a known one
    behind head and the store was opened ``readonly=True`` or with ``upgrade=False``. A caller
    that may write can recover by opening again with upgrades allowed (the CLI's read-only
    commands do, after which they reopen read-only); the message says which command upgrades.

    Attributes
    ----------
    location : str
        The SQLite path or database URL, as the message names it.
    revision : str
        The database's revision (``alembic_version.version_num``), e.g. ``"0001"``.
    head : str
        The head revision this m2i would upgrade it to.
    """

    def __init__(self, message: str, *, location: str, revision: str, head: str):
        super().__init__(message)
        self.location = location
        self.revision = revision
        self.head = head


class ProviderError(M2IError):
    """An LLM provider failed in a way the user can act on.

    ``retryable`` tells the runner whether another attempt may succeed (429, 5xx, timeouts).
    ``scope`` says what the error is about: ``"request"`` (this request or answer: invalid JSON,
    a refusal, a 400), ``"unavailable"`` (the provider is not answering now: 429, 5xx, 529, a
    refused connection, a timeout; every request waits, see
    :class:`m2i.prompts.providers.base.ProviderHold`) or ``"provider"`` (no request can succeed
    until the user acts: a rejected key, an unknown model or base path). ``cause`` is a few words
    for the log (``"429 rate limited"``).
    """

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None,
                 scope: str = "request", cause: str | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.scope = scope
        self.cause = cause


class BackendError(M2IError):
    """An image backend cannot load or render."""


class ConfigError(M2IError):
    """A configuration value is invalid."""
