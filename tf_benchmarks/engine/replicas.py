"""Where training runs, as a `tf.distribute` strategy: one device (the default strategy), the devices
of one machine (MirroredStrategy: GPUs, or logical CPU devices) or several machines
(MultiWorkerMirroredStrategy, described by `TF_CONFIG`); which process writes files (the chief), and
barriers that keep the workers' stages in step."""

import contextlib
import json
import os

from tf_benchmarks.core import workers
from tf_benchmarks.core.errors import UserError
import tensorflow.compat.v1 as tf

STRATEGIES = ('default', 'mirrored', 'multi_worker')

# Errors a collective op raises when another worker died or stopped answering.
LOST_WORKER_ERRORS = (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                      tf.errors.AbortedError, tf.errors.CancelledError)


class Replicas:
    """A strategy and what goes with it: the session target and config, this process's place
    among the workers, and whether it writes files (only the chief, worker 0, does)."""

    def __init__(self, kind='default', strategy=None, devices=(), worker_index=0, num_workers=1,
                 target='', timeout_ms=0, server=None):
        self.kind = kind
        self.strategy = strategy or tf.distribute.get_strategy()
        self.devices = list(devices)
        self.worker_index = worker_index
        self.num_workers = num_workers
        self.target = target
        self.timeout_ms = timeout_ms
        self.server = server  # kept alive for the process's lifetime

    @property
    def num_replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def is_chief(self):
        return self.worker_index == 0

    @property
    def multi_worker(self):
        return self.kind == 'multi_worker'

    def scope(self):
        return self.strategy.scope() if self.kind != 'default' else contextlib.nullcontext()

    def session_config(self, base):
        """`base` (a ConfigProto) with what the strategy needs: its devices, its collectives, and
        for several workers a time limit on every step, so that a lost worker ends the run."""
        config = tf.ConfigProto()
        config.CopyFrom(base)
        if self.kind == 'mirrored' and self.devices[0].startswith('/cpu'):
            config.device_count['CPU'] = len(self.devices)
        if self.kind != 'default':
            config = self.strategy.update_config_proto(config)
        if self.timeout_ms:
            config.operation_timeout_in_ms = self.timeout_ms
        return config

    def per_replica_batch(self, batch_size):
        if batch_size % self.num_replicas:
            raise UserError('the batch of %d images does not split evenly over %d replicas; pass '
                            'a --batch_size that is a multiple of %d'
                            % (batch_size, self.num_replicas, self.num_replicas))
        return batch_size // self.num_replicas

    def barrier(self, base_config=None):
        """Wait until every worker gets here (one collective all-reduce); nothing on one worker."""
        if not self.multi_worker:
            return
        with tf.Graph().as_default() as graph, self.strategy.scope():
            ones = self.strategy.run(lambda: tf.constant(1.0))
            total = self.strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)
            config = self.session_config(base_config or tf.ConfigProto())
            with tf.Session(self.target, graph=graph, config=config) as session:
                try:
                    session.run(total)
                except LOST_WORKER_ERRORS as e:
                    raise lost_worker_error(e)

    def describe(self):
        if self.kind == 'default':
            return 'one device'
        if self.kind == 'mirrored':
            return '%d replicas on %s' % (self.num_replicas, ', '.join(self.devices))
        return 'worker %d of %d, %d replicas in all' % (self.worker_index, self.num_workers,
                                                       self.num_replicas)


def lost_worker_error(error):
    return UserError('another worker stopped or stopped answering (TensorFlow: %s); every worker '
                     'must run. Start the same command again on every worker: the run goes on from '
                     'its last checkpoint' % type(error).__name__)


_current = Replicas()


def current():
    """The process's Replicas (the default strategy unless `configure` was called)."""
    return _current


def configure(kind='default', num_devices=None, timeout_s=600.0):
    """Set up the process's strategy; call once, before any graph is built."""
    global _current
    if kind not in STRATEGIES:
        raise UserError('--strategy must be one of %s, got %r' % (', '.join(STRATEGIES), kind))
    if kind == 'default':
        if num_devices not in (None, 1):
            raise UserError('--num_devices %d needs --strategy mirrored' % num_devices)
        _current = Replicas()
    elif kind == 'mirrored':
        _current = _mirrored(num_devices)
    else:
        if num_devices is not None:
            raise UserError('--num_devices is for --strategy mirrored; a multi-worker run uses each '
                            'worker\'s devices')
        _current = _multi_worker(timeout_s)
    workers.configure(_current.is_chief, _current.barrier if _current.multi_worker else None,
                      _current.worker_index, _current.num_workers)
    return _current


def _mirrored(num_devices):
    import tensorflow as tf2
    gpus = tf2.config.list_physical_devices('GPU')
    if gpus:
        count = num_devices or len(gpus)
        if count > len(gpus):
            raise UserError('--num_devices %d, but this machine has %d GPUs' % (count, len(gpus)))
        devices = ['/gpu:%d' % i for i in range(count)]
    else:
        count = num_devices or 2
        if count < 1:
            raise UserError('--num_devices must be at least 1, got %d' % count)
        cpu = tf2.config.list_physical_devices('CPU')[0]
        try:
            tf2.config.set_logical_device_configuration(
                cpu, [tf2.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # already initialized, e.g. a second configure() in one process
            pass
        devices = ['/cpu:%d' % i for i in range(count)]
    return Replicas('mirrored', tf.distribute.MirroredStrategy(devices), devices)


def cluster_from_tf_config(text):
    """(cluster dict, task type, task index) from TF_CONFIG's JSON, with clear errors."""
    if not text:
        raise UserError('--strategy multi_worker needs TF_CONFIG, e.g. TF_CONFIG=\'{"cluster": '
                        '{"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", '
                        '"index": 0}}\' (the same cluster on every worker, its own index on each)')
    try:
        config = json.loads(text)
        cluster = config['cluster']
        task_type, index = config['task']['type'], int(config['task']['index'])
        workers = list(cluster.get('chief', [])) + list(cluster['worker'])
    except (ValueError, KeyError, TypeError) as e:
        raise UserError('TF_CONFIG is not a TensorFlow cluster description (%s: %s); it needs '
                        '"cluster": {"worker": [...]} and "task": {"type": "worker", "index": N}'
                        % (type(e).__name__, e))
    if task_type not in ('chief', 'worker') or task_type not in cluster or \
            not 0 <= index < len(cluster[task_type]):
        raise UserError('TF_CONFIG\'s task %s %d is not in its cluster (%s); "task" must name '
                        'this worker\'s own entry: "type" "worker" (or "chief") and its index in '
                        'that list' % (task_type, index, json.dumps(cluster)))
    for address in workers:
        check_address(address)
    return cluster, task_type, index


def check_address(address):
    """A TF_CONFIG address must be host:port with a host part and a port in 1..65535."""
    host, _, port = str(address).rpartition(':')
    if not host.strip('[] ') or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UserError('TF_CONFIG address %r is not host:port (a host name or address, and a '
                        'port from 1 to 65535)' % (address,))


def _multi_worker(timeout_s):
    cluster, task_type, index = cluster_from_tf_config(os.environ.get('TF_CONFIG'))
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
    order = [('chief', i) for i in range(len(cluster.get('chief', [])))] + \
        [('worker', i) for i in range(len(cluster['worker']))]
    worker_index = order.index((task_type, index))
    config = strategy.update_config_proto(tf.ConfigProto())
    address = cluster[task_type][index]
    # TensorFlow's gRPC server listens on the port of this task's TF_CONFIG address on every
    # interface (its ServerDef has no bind address); see docs/security.md.
    try:
        server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=task_type,
                                      task_index=index, config=config, start=True)
    except (tf.errors.OpError, ValueError) as e:
        raise UserError('cannot start the worker server on %s (%s); is the port free?'
                        % (address, str(e).splitlines()[0]))
    return Replicas('multi_worker', strategy, worker_index=worker_index, num_workers=len(order),
                    target=server.target, timeout_ms=int(timeout_s * 1000), server=server)
