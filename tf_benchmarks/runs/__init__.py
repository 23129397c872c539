"""Run bookkeeping in a working directory: stages and run.json, results.json, and the log files.
May import `files`, `models`, `network` and `core`."""
