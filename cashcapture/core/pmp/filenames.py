"""The collector's batch file name: shared by the registry (what it may hold) and the writer."""

from __future__ import annotations

from datetime import datetime

#: The KY 2011 guide's batch file name; a profile may name another pattern.
KY_2011_PATTERN = "PMP_{state}_{submitter_id}_{reg_key}_{when:%Y%m%d%H%M%S}.dat"


def file_name(
    submitter_id: str,
    reg_key: str,
    when: datetime,
    state: str = "KY",
    pattern: str = KY_2011_PATTERN,
) -> str:
    """The file name the profile's pattern gives (by default PMP_KY_SubmitterID_RegKey_
    CCYYMMDDHHMMSS.dat); every part must be ASCII letters and digits."""
    for label, v in (("submitter ID", submitter_id), ("RegKey", reg_key), ("state", state)):
        if not (v.isascii() and v.isalnum()):  # str.isalnum alone takes "É" and "²"
            raise ValueError(f"{label} must be non-empty ASCII letters and digits")
    return pattern.format(state=state, submitter_id=submitter_id, reg_key=reg_key, when=when)
