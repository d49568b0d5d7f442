"""DICOM unique identifiers as PS3.5 section 9.1 defines them, checked before one is echoed anywhere.

A UID is at most 64 characters of digits and dots, one value, each dot-separated component a number
without leading zeros ("0" itself allowed). A file can put anything in a UI element - a name, a
newline and a forged log line, several values - so nothing else is ever passed on as a UID.
"""

import re

MAX_UID_LENGTH = 64
# Also published as the OpenAPI pattern of UID path parameters (anchored there: a pattern is a search).
UID_PATTERN = r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*"
_UID = re.compile(UID_PATTERN)


def valid_uid(value: object) -> str | None:
    """``value`` as a plain ``str`` if it is one valid UID, else None (multi-valued, sequence, ...)."""
    if not isinstance(value, str):  # pydicom's MultiValue, Sequence, bytes of a UN element...
        return None
    text = str(value)
    if len(text) > MAX_UID_LENGTH or _UID.fullmatch(text) is None:
        return None
    return text
