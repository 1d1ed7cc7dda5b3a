"""The package's one base error: `IncrementalError` means "this cannot be done as asked", and
its message names what is wrong (the key, the file, the URL with its password hidden, the column).

Every error class of the package subclasses it, and the edges that talk to other systems
(warehouse connections, MLflow, the config file, the lake) turn the library errors they meet
into one of them. The CLI prints such an error as one line and exits 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import re


class IncrementalError(Exception):
    """Bad input, configuration or environment; the message says what and where."""


class WarehouseError(IncrementalError):
    """The warehouse cannot be reached or does not hold what the SQL expects."""


class TrackingError(IncrementalError):
    """MLflow (tracking or registry) cannot be reached or refused the request."""


def redact_url(url: str) -> str:
    """`url` with any password hidden (`postgresql://user:***@host/db`), even when it is malformed."""
    return _PASSWORD.sub(r"\1***@", str(url))


_PASSWORD = re.compile(r"((?:^|[/:])[^:/@\s]*:)[^@/\s]*@")
