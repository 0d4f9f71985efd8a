"""The collector's batch file name: shared by the registry (what it may hold) and the writer."""

from __future__ import annotations

from datetime import datetime


def file_name(submitter_id: str, reg_key: str, when: datetime, state: str = "KY") -> str:
    """PMP_KY_SubmitterID_RegKey_CCYYMMDDHHMMSS.dat, as the KY guide names batch files."""
    for label, v in (("submitter ID", submitter_id), ("RegKey", reg_key), ("state", state)):
        if not (v.isascii() and v.isalnum()):  # str.isalnum alone takes "É" and "²"
            raise ValueError(f"{label} must be non-empty ASCII letters and digits")
    return f"PMP_{state}_{submitter_id}_{reg_key}_{when:%Y%m%d%H%M%S}.dat"
