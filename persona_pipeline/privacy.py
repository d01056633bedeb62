"""Customer keys in published outputs: plain, salted-hash or omitted."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

import pandas as pd

from persona_pipeline.config import PrivacySettings
from persona_pipeline.exceptions import ConfigError

MIN_SALT_CHARS = 16


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
