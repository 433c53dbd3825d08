"""Process exit codes a node ends with on purpose, so a supervisor (or a test) can tell them from a crash."""

from __future__ import annotations

from typing import Final

#: The node's lease (its partition, its instruments) passed to another owner, or ran out while the
#: server did not answer: it stopped acting and exits to be restarted as a standby. sysexits.h's
#: EX_TEMPFAIL ("try again later").
EXIT_LEASE_LOST: Final = 75

#: What each deliberate exit code means, for the supervisor's "exited (...)" lines.
MEANINGS: Final = {EXIT_LEASE_LOST: "lease lost"}
