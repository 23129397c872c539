"""The workers of a multi-worker run, as the file-writing code needs them: only the chief (worker 0)
writes weights, logs, records and checkpoints (the others compute the same things and write
nothing), and `barrier()` keeps every worker's stages in step."""

_writes_files = True
_barrier = None
_index, _count = 0, 1


def configure(writes_files, barrier=None, index=0, count=1):
    global _writes_files, _barrier, _index, _count
    _writes_files, _barrier, _index, _count = bool(writes_files), barrier, int(index), int(count)


def index():
    """This worker's place among the workers (0, the chief, in a run of one process)."""
    return _index


def count():
    """How many workers the run has (1 in a run of one process)."""
    return _count


def writes_files():
    return _writes_files


def barrier():
    """Wait until every worker gets here; nothing in a run of one process."""
    if _barrier is not None:
        _barrier()
