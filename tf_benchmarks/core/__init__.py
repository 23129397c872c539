"""What every layer may use: user-facing errors (one `error:` line, exit 2), which worker writes
files, crash points for tests, and a quiet TensorFlow import. Imports nothing of the project."""
