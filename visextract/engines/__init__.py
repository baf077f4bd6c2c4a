"""Engines run the extraction graph over files: `local` in this process; other engines sit beside it.
What they share (the run plan, the extraction context, the run's lifecycle) is in `lifecycle`."""
