"""Plain names: ids and variant names become folder names and SQL values, so they are limited to a safe alphabet.

The parameter models and storage both check them; this module imports nothing of either.
"""

from __future__ import annotations

import re

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is a plain name; raise a ValueError naming ``what`` otherwise."""
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise ValueError(f"{what} {value!r} is not a plain name: use 1-64 letters, digits, '_', '.' or '-', "
                         f"starting with a letter or digit")
    return value
