"""The workers of a multi-worker run, as the file-writing code needs them: only the chief (worker 0)
writes weights, logs, records and checkpoints (the others compute the same things and write
nothing), and `barrier()` keeps every worker's stages in step."""

_writes_files = True
_barrier = None


def configure(writes_files, barrier=None):
    global _writes_files, _barrier
    _writes_files, _barrier = bool(writes_files), barrier


def writes_files():
    return _writes_files


def barrier():
    """Wait until every worker gets here; nothing in a run of one process."""
    if _barrier is not None:
        _barrier()
