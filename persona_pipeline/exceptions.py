"""Domain errors. Messages name the table, column, rule, count or config key, and say what to do."""

from __future__ import annotations


class PersonaPipelineError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class ConfigError(PersonaPipelineError):
    """The configuration is invalid; the message names the key and the fix."""


class SourceError(PersonaPipelineError):
    """The warehouse source cannot be read as mapped (missing table or column, wrong type)."""


class DataQualityError(PersonaPipelineError):
    """A dataset-level validation failed; the run must not publish.

    ``failures`` lists one line per failed rule (table, column, rule, count) so alerts can show them.
    """

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class PrivacyError(PersonaPipelineError):
    """An output would violate a privacy rule (k-anonymity, PII in a prompt)."""


class ImageGenerationError(PersonaPipelineError):
    """The image provider failed permanently (bad credentials, unknown model, refusal after retry)."""


class StorageError(PersonaPipelineError):
    """The object store rejected or lost a read or write."""
