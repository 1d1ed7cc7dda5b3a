"""The package's one base error: `IncrementalError` means "this cannot be done as asked", and
its message names what is wrong (the key, the file, the URL with its password hidden, the column).

Every error class of the package subclasses it, and the edges that talk to other systems
(warehouse connections, MLflow, the config file, the lake) turn the library errors they meet
into one of them. The CLI prints such an error as one line and exits 2; anything else is a bug
and keeps its traceback.

`retryable` says whether trying the same thing again later may work: false for bad input,
configuration and data (they fail the same way every time), true for a service that may come
back (the warehouse, MLflow, a serving replica). The Airflow tasks fail at once, without their
retries, on an error that is not retryable (`search_ranker_common.fail_fast`).
"""

from __future__ import annotations

import re
from typing import ClassVar


class IncrementalError(Exception):
    """Bad input, configuration or environment; the message says what and where."""

    retryable: ClassVar[bool] = False

    def __init__(self, *args: object, retryable: bool | None = None) -> None:
        # the message goes to terminals, task logs, alerts and HTTP answers: never a password
        super().__init__(*(redact_url(a) if isinstance(a, str) else a for a in args))
        if retryable is not None:
            self.retryable = retryable  # type: ignore[misc]  # this one error, not its class


class InputError(IncrementalError, ValueError):
    """An argument or value that cannot be used as given: an hour not on the hour, an empty
    interval, a base model that is not there."""


class DamagedStateError(IncrementalError):
    """A file the pipeline keeps (a manifest, a validation record, the drift state, the prequential
    record, the anchor's record) cannot be read or is not what its schema says: the message names
    the file (and the line of a JSON-lines file) and what is wrong. A person restores or repairs it;
    trying again changes nothing."""


class WarehouseError(IncrementalError):
    """The warehouse cannot be reached or does not hold what the SQL expects."""

    retryable = True


class TrackingError(IncrementalError):
    """MLflow (tracking or registry) cannot be reached or refused the request."""

    retryable = True


MIN_REASON_CHARS = 10  # the one rule for every reason a person is asked for (the DAGs' Params say the same)


def require_reason(reason: str | None, what: str, error: type[IncrementalError] = InputError) -> str:
    """`reason` stripped, after checking it says something: at least `MIN_REASON_CHARS`
    characters (`error`, an InputError unless told, naming `what` otherwise). Every recorded human decision goes through it:
    promote, rollback, force-promote, readmit, refreshing the anchor."""
    text = (reason or "").strip()
    if len(text) < MIN_REASON_CHARS:
        shown = f" ({text!r} is {len(text)})" if text else ""
        raise error(f"{what} needs a reason of at least {MIN_REASON_CHARS} characters{shown}: "
                         "say why; it is recorded")
    return text


def redact_url(text: str) -> str:
    """`text` with the password of every URL in it hidden (`postgresql://user:***@host/db`): a
    URL alone, even a malformed one, or any message, log line or answer that quotes URLs (an
    MLflow error repeats the URL it was given, password included). The one function for it:
    every edge that prints, logs or answers an error goes through it."""
    return _PASSWORD.sub(r"\1***@", str(text))


# `user:` at the start or after a `/` (`scheme://`) or `:`, then the password: anything up to the
# last `@` before the host (a password may hold an unquoted `@` or `:`), never across a `/`,
# whitespace or a quote. Not after a space: "auc:0.7,ndcg@10" in a message is no URL.
_PASSWORD = re.compile(r"((?:^|[/:])[^:/@\s'\"]*:)[^/\s'\"]*@")
