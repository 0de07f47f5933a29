"""The command line's exit codes, named once so every subcommand keeps the same contract.

Binding for scripts and CI: 0 ok; 1 findings, test failures or widened access (the input
was read and judged); 2 usage or unreadable input (nothing was judged). Kept in a leaf
module so subcommands can import it without importing the `mcpdsl.cli` group itself.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
