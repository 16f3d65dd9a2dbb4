"""Beam's DirectRunner, minus the implicit Prism download.

Beam 2.77's DirectRunner first tries Prism, downloading its binary from GitHub with no
timeout: offline that fails (fast when DNS fails, after minutes when a firewall drops
the connection), then it falls back to the FnApiRunner. When no local Prism binary is
available the DirectRunner preset runs this subclass, which skips the Prism attempt and
otherwise chooses exactly as Beam does (FnApiRunner for batch, the bundle-based runner
for what the FnApiRunner cannot run).
"""

from __future__ import annotations

from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner


class OfflineDirectRunner(SwitchingDirectRunner):
    # SwitchingDirectRunner consults this flag only to decide whether to try Prism
    # (interactive sessions skip it); set, it goes straight to its local runners.
    _is_interactive = True
