"""One command at a time per working directory: `RunLock` is the file `.run.lock`, created with
O_EXCL, holding the host, PID and a heartbeat time that a background thread refreshes every
HEARTBEAT_S seconds. A second command finds the file and stops with a UserError naming the holder.
A lock left by a command that is gone is taken over, with a line saying so: on this host when its
process no longer exists, from another host (a shared file system) when its heartbeat is older
than STALE_FACTOR heartbeats. The lock file is removed when the command ends (also on an error or
Ctrl-C); only the command holding it removes it."""

import json
import os
import socket
import threading
import time

from tf_benchmarks.core.errors import UserError
from tf_benchmarks.files.atomic import write_text

LOCK_FILE = '.run.lock'
HEARTBEAT_S = 5.0
STALE_FACTOR = 10


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def read_holder(path):
    """The lock file's content as a dict, or None if it is not (yet) a complete one."""
    try:
        with open(path) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get('pid'), int) \
            or not isinstance(holder.get('host'), str) \
            or not isinstance(holder.get('heartbeat'), (int, float)):
        return None
    return holder


class RunLock:
    """`with RunLock(directory):` the body runs holding the directory's lock."""

    def __init__(self, directory='.', log=print, heartbeat_s=HEARTBEAT_S):
        self.path = os.path.join(directory, LOCK_FILE)
        self.log = log
        self.heartbeat_s = heartbeat_s
        self.host = socket.gethostname()
        self.token = '%s:%d:%f' % (self.host, os.getpid(), time.time())
        self._stop = threading.Event()
        self._thread = None

    def _content(self):
        return json.dumps({'host': self.host, 'pid': os.getpid(), 'heartbeat': time.time(),
                           'token': self.token}) + '\n'

    def _create(self):
        """True if this process created the lock file; False if it exists."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as e:
            e.filename = os.path.abspath(self.path)
            raise
        try:
            with os.fdopen(fd, 'w') as f:
                f.write(self._content())
        except OSError as e:  # a full disk: no empty lock file left behind
            os.remove(self.path)
            e.filename = os.path.abspath(self.path)
            raise
        return True

    def _stale_reason(self, holder):
        """Why the lock in the file is left over (a sentence), or None if its holder may run."""
        limit = STALE_FACTOR * self.heartbeat_s
        if holder is None:  # being written, or garbage: judged by the file's age
            try:
                age = time.time() - os.path.getmtime(self.path)
            except OSError:
                return 'it was just removed'
            return 'it is unreadable and %.0f s old' % age if age > limit else None
        if holder['host'] == self.host:
            if not _process_exists(holder['pid']):
                return 'its process %d on this host no longer exists' % holder['pid']
            return None
        age = time.time() - holder['heartbeat']
        if age > limit:
            return ('its heartbeat from host %s (PID %d) is %.0f s old (stale after %.0f s)'
                    % (holder['host'], holder['pid'], age, limit))
        return None

    def acquire(self):
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return
            holder = read_holder(self.path)
            reason = self._stale_reason(holder)
            if reason is None:
                raise self._held_error(holder)
            self.log('taking over the lock %s: %s' % (os.path.abspath(self.path), reason))
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        raise self._held_error(read_holder(self.path))

    def _held_error(self, holder):
        who = ('host %s, PID %d' % (holder['host'], holder['pid'])) if holder \
            else 'a command that is starting'
        return UserError('another command is running in this directory (%s; lock file %s); wait '
                         'for it to end or stop it, or run in another directory. One command at a '
                         'time writes a working directory; a lock left by a command that is gone '
                         'is taken over by the next one' % (who, os.path.abspath(self.path)))

    def _start_heartbeat(self):
        self._thread = threading.Thread(target=self._beat, name='run-lock-heartbeat', daemon=True)
        self._thread.start()

    def _beat(self):
        while not self._stop.wait(self.heartbeat_s):
            holder = read_holder(self.path)
            if holder is None or holder.get('token') != self.token:
                return  # taken over (we were judged stale): leave the new holder's file alone
            try:
                write_text(self.path, self._content())
            except OSError:
                pass  # a full disk: the next beat tries again

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            holder = read_holder(self.path)
            if holder is not None and holder.get('token') == self.token:
                os.remove(self.path)

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
