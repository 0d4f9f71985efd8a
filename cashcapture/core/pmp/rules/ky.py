"""Kentucky (KASPER, eKASPER dispenser guide v1rC 2011): ASAP 4.1 rules table.

Data: data/ky-4.1.csv (fields of interest, state element names, checks),
data/patient-ids.csv (Appendix B), data/us-states.csv and data/countries.csv
(Appendix B tables 1 and 2), data/messages.csv (message texts),
data/settings.csv (rows KY and KY-2011: SSN rule, compound reporting).

KY is KASPER as it is today: ASAP 4.2 (data/ky-4.2.csv, the guide's fields of
interest in 4.2 numbering) and SSNs as the SSA issues them now. KY_2011 keeps
the 2011 guide's ASAP 4.1 rules (SSN area 773 or higher invalid) for the
profile that reproduces that guide. The profiles (core.profiles) load the same
tables by file name; these objects serve the pure callers that name a state.

PO Box in PAT12: the guide shows it both as a warning (record accepted) and
as a reject reason. The default is a warning, so that a fill is never held
back on a rule the collector may only warn about; KY_PO_BOX_REJECT is the
strict table.
"""

from __future__ import annotations

from dataclasses import replace

from cashcapture.core.pmp.rules import PO_BOX_REJECT, PO_BOX_WARNING, load

KY = load("KY", "4.2", "ky-4.2.csv", po_box=PO_BOX_WARNING, settings="KY")
KY_2011 = load("KY", "4.1", "ky-4.1.csv", po_box=PO_BOX_WARNING, settings="KY-2011")
KY_PO_BOX_REJECT = replace(KY, po_box=PO_BOX_REJECT)
