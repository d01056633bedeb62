"""Customer keys in published outputs (plain, salted-hash or omitted), and personal data kept out of text values."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping

import pandas as pd

from persona_pipeline.config import PrivacySettings
from persona_pipeline.exceptions import ConfigError

MIN_SALT_CHARS = 16

#: Text shaped like contact data: an email address, a URL, or a phone number (7+ digits with separators).
PERSONAL_DATA = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?:https?://|www\.)\S+"
    r"|\+?\d(?:[\s().-]*\d){6,}",
    re.IGNORECASE,
)


def looks_personal(value: object) -> bool:
    """Whether a data value (a category, an occupation, ...) contains something shaped like contact data."""
    return isinstance(value, str) and PERSONAL_DATA.search(value) is not None


def drop_personal_values(values: Iterable[str]) -> tuple[str, ...]:
    """``values`` without those that look like contact data (for category vocabularies)."""
    return tuple(value for value in values if not looks_personal(value))


def redact_personal(values: pd.Series) -> pd.Series:
    """``values`` with every entry that looks like contact data replaced by a missing value.

    Free-text attributes (occupation, region, ...) sometimes hold an email address or phone number typed into the
    wrong field; such a value must never become a trait, a persona word or a prompt.
    """
    distinct = values.dropna().unique()
    personal = [value for value in distinct if looks_personal(value)]
    return values.mask(values.isin(personal)) if personal else values


def hash_key(key: str, salt: bytes) -> str:
    """HMAC-SHA256 of a customer key: stable for one salt, not reversible or guessable without it."""
    return hmac.new(salt, key.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def publishable_keys(
    keys: pd.Series, settings: PrivacySettings, environ: Mapping[str, str] | None = None
) -> pd.Series | None:
    """The customer keys to publish in the membership table (None when keys are omitted)."""
    if settings.membership_keys == "omit":
        return None
    if settings.membership_keys == "plain":
        return keys.astype("string")
    env = os.environ if environ is None else environ
    salt = env.get(settings.salt_env, "")
    if len(salt) < MIN_SALT_CHARS:
        raise ConfigError(
            f"privacy.membership_keys is 'hashed' but ${settings.salt_env} is "
            + ("not set" if not salt else f"shorter than {MIN_SALT_CHARS} characters")
            + ": set it to a long random secret (the same value on every worker)"
        )
    salt_bytes = salt.encode("utf-8")
    return pd.Series([hash_key(str(k), salt_bytes) for k in keys], index=keys.index, dtype="string")
