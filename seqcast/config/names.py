"""Plain names and store locations: ids and variant names become folder names and SQL values, so they are limited
to a safe alphabet; a store location is a local folder or a URL of a store seqcast can use.

The parameter models, the settings and storage all check them; this module imports nothing of any.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

FLOW_NAME = "forecast"  # the forecast flow's name; its deployments are forecast/<variant>
TRAINING_LIMIT = "seqcast-training"  # the global concurrency limit that train-model holds while it fits
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is a plain name; raise a ValueError naming ``what`` otherwise."""
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise ValueError(f"{what} {value!r} is not a plain name: use 1-64 letters, digits, '_', '.' or '-', "
                         f"starting with a letter or digit")
    return value


SCHEMES = ("s3",)


def is_url(location: str) -> bool:
    """Whether a location names an object store rather than a local folder (``scheme://``)."""
    return "://" in location


def check_url(location: str) -> None:
    """Refuse a URL seqcast cannot store in, naming what it can."""
    parsed = urlparse(location)
    if parsed.scheme not in SCHEMES:
        raise ValueError(f"{parsed.scheme}:// is not a store seqcast can use: give a local folder or "
                         f"s3://bucket/prefix (any S3-compatible store, through the AWS_* variables)")
    if not parsed.netloc:
        raise ValueError("an S3 location names its bucket: s3://bucket or s3://bucket/prefix")
