"""One exception hierarchy for everything a user can act on.

    TenureError
    ├── InputError          the input cannot be used at all (missing file, unreadable directory)
    ├── ConfigError         a workspace setting or a policy file is invalid
    ├── StoreError          the database cannot be opened or migrated
    └── AuditError          the audit chain is broken (names the first broken link)

A malformed *line* of input is not an exception: it becomes a reject record and the run goes on.
"""

from pydantic import ValidationError


class TenureError(Exception):
    """Base of every error tenure raises on purpose; its message tells the user what to do."""


class InputError(TenureError):
    """The input as a whole is unusable."""


class ConfigError(TenureError):
    """A setting, policy or mapping file is invalid."""


class StoreError(TenureError):
    """The store cannot be opened, migrated or written."""


class AuditError(TenureError):
    """The audit chain does not verify."""


def field_errors(exc: ValidationError) -> str:
    """A pydantic validation error as one line: `field.path: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
        for e in exc.errors(include_url=False)
    )
