"""Convert an ImageFolder tree (ImageNet or your own classes) to TFRecord shards in the format of
tensorflow/models' research/slim/datasets/build_imagenet_data.py (written anew; the format is in
tf_benchmarks/data/imagenet_records.py), plus a manifest.json written last.

Input: `--train_directory DIR/train` (class subfolders `<synset>/*.JPEG`) and
`--validation_directory DIR/val` (class subfolders, or ImageNet's flat folder of
ILSVRC2012_val_*.JPEG with `--validation_labels imagenet_2012_validation_synset_labels.txt`, one
synset per sorted file name); or `--input_dir DIR` holding train/ and val/ (or validation/), or
holding the class folders themselves, split by `--validation_fraction F`; or `--synthetic N`.
Labels are 1..N in sorted synset order (0 = background). Images are listed in sorted order and
shuffled with random.seed(12345) as the original, then cut into `--train_shards` /
`--validation_shards` contiguous shards, so the output depends on the tree only (not on
`--num_workers`). PNG, CMYK, grayscale and other non-RGB-JPEG files are re-encoded to RGB JPEG by
TensorFlow's image ops.

Each shard is written to a temporary name and renamed, with a record of its inputs in
`.build_imagenet_data/`; a re-run of a killed conversion keeps the finished shards and writes the
rest. A finished conversion (manifest.json present) is kept unless `--overwrite`.

    python datasets/build_imagenet_data.py --input_dir /data/imagenet --output_directory /data/tf \\
        --synset_names imagenet_metadata.txt --bounding_box_file imagenet_2012_bounding_boxes.csv
    python datasets/build_imagenet_data.py --output_directory data/synth --synthetic 500
"""

import concurrent.futures
import hashlib
import json
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf_benchmarks.core.errors import UserError, exit_on_user_error  # noqa: E402
from tf_benchmarks.core.faults import crash_point  # noqa: E402
from tf_benchmarks.data import imagenet_records as fmt  # noqa: E402
from tf_benchmarks.files.atomic import file_digest, replacing, write_json  # noqa: E402

SHUFFLE_SEED = 12345
STATE_DIR = '.build_imagenet_data'
IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png', '.gif', '.bmp', '.webp')
DEFAULT_SHARDS = {'train': 1024, 'validation': 128}


# -- finding the images ----------------------------------------------------------------------------
def _require_dir(path, what):
    if not os.path.isdir(path):
        raise UserError('%s %s is not a folder' % (what, path))


def _is_image(name):
    return not name.startswith('.') and name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(directory):
    """Sorted names of the subfolders of `directory` (the classes of an ImageFolder tree)."""
    return sorted(e.name for e in os.scandir(directory)
                  if e.is_dir() and not e.name.startswith('.'))


def image_files(directory):
    """Sorted (name, size) of the image files directly in `directory`."""
    return sorted((e.name, e.stat().st_size) for e in os.scandir(directory)
                  if e.is_file() and _is_image(e.name))


def folder_items(directory, classes):
    """(path, relative path, size, class index) of every image of a split with class subfolders."""
    index = {c: i for i, c in enumerate(classes)}
    items = []
    for name in class_folders(directory):
        if name not in index:
            raise UserError('%s has class folder %s, which the training set does not have; every '
                            'class must be in the training set' % (directory, name))
        for filename, size in image_files(os.path.join(directory, name)):
            items.append((os.path.join(directory, name, filename), name + '/' + filename, size,
                          index[name]))
    return items


def read_validation_labels(path, count):
    """The synsets of tensorflow/models' imagenet_2012_validation_synset_labels.txt: one per line,
    for the sorted file names. The devkit's numeric ground truth is refused."""
    try:
        with open(path) as f:
            lines = [line.strip() for line in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError('cannot read --validation_labels %s (%s)' % (path, e))
    while lines and not lines[-1]:
        lines.pop()
    if lines and all(line.isdigit() for line in lines):
        raise UserError(
            '%s holds numbers, like the devkit\'s ILSVRC2012_validation_ground_truth.txt; its IDs '
            'follow the devkit\'s meta.mat order, not the sorted synset order of the labels. Use '
            'tensorflow/models\' imagenet_2012_validation_synset_labels.txt (one synset such as '
            'n01751748 per line)' % path)
    if len(lines) != count:
        raise UserError('%s has %d labels for %d validation images; it must have one synset per '
                        'image, in the order of the sorted file names' % (path, len(lines), count))
    return lines


def flat_validation_items(directory, labels_file, classes):
    """Items of a flat validation folder labelled by `labels_file`."""
    if not labels_file:
        raise UserError('%s holds images but no class folders; pass --validation_labels FILE '
                        '(imagenet_2012_validation_synset_labels.txt: one synset per line, in '
                        'the order of the sorted file names)' % directory)
    files = image_files(directory)
    synsets = read_validation_labels(labels_file, len(files))
    index = {c: i for i, c in enumerate(classes)}
    items = []
    for line, ((name, size), synset) in enumerate(zip(files, synsets), 1):
        if synset not in index:
            raise UserError('line %d of %s names %r, which is not a class of the training set '
                            '(%s ...)' % (line, labels_file, synset, ', '.join(classes[:3])))
        items.append((os.path.join(directory, name), name, size, index[synset]))
    return items


def validation_items(directory, labels_file, classes):
    if class_folders(directory):
        return folder_items(directory, classes)
    if not image_files(directory):
        raise UserError('--validation_directory %s holds no images and no class folders'
                        % directory)
    return flat_validation_items(directory, labels_file, classes)


def split_by_fraction(items, fraction):
    """Per class, round(n * fraction) images to validation (at least one if the class has two),
    chosen by a seeded shuffle of the sorted files: the same tree always splits the same way."""
    if not 0 < fraction < 1:
        raise UserError('--validation_fraction must be between 0 and 1, got %s' % fraction)
    by_class = {}
    for item in items:
        by_class.setdefault(item[3], []).append(item)
    train, val = [], []
    for c in sorted(by_class):
        members = sorted(by_class[c])
        random.Random('%d:%d' % (SHUFFLE_SEED, c)).shuffle(members)
        k = int(round(len(members) * fraction))
        k = min(max(k, 1 if len(members) > 1 else 0), len(members) - 1)
        val += members[:k]
        train += members[k:]
    return sorted(train), sorted(val)


def read_synset_names(path, classes):
    """{synset: text} from `<synset><TAB><text>` lines; every class must be there."""
    names = {}
    try:
        with open(path, encoding='utf-8') as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    parts = line.rstrip('\r\n').split('\t', 1)
                    if len(parts) != 2:
                        raise UserError('line %d of %s is not "<synset><TAB><text>": %r'
                                        % (number, path, line.strip()[:80]))
                    names[parts[0].strip()] = parts[1].strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError('cannot read --synset_names %s (%s)' % (path, e))
    missing = [c for c in classes if c not in names]
    if missing:
        raise UserError('%s has no text for %d classes (%s ...); add "<synset><TAB><text>" lines'
                        % (path, len(missing), ', '.join(missing[:3])))
    return names


def read_bounding_boxes(path):
    """{file name: [(xmin, ymin, xmax, ymax)]} from process_bounding_boxes.py's CSV (no header;
    coordinates in [0, 1])."""
    boxes = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError('cannot read --bounding_box_file %s (%s)' % (path, e))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(',')]
        try:
            box = tuple(float(p) for p in parts[1:])
        except ValueError:
            box = ()
        if (len(parts) != 5 or len(box) != 4 or not all(0.0 <= v <= 1.0 for v in box)
                or box[0] > box[2] or box[1] > box[3]):
            raise UserError('line %d of %s is not "<file>,<xmin>,<ymin>,<xmax>,<ymax>" with '
                            'coordinates in [0, 1] and min <= max: %r' % (number, path, line[:80]))
        boxes.setdefault(parts[0], []).append(box)
    return boxes


# -- the plan: which image goes to which shard -----------------------------------------------------
def shuffled(items):
    """The original's order: the sorted list shuffled once with random.seed(12345)."""
    order = list(range(len(items)))
    random.Random(SHUFFLE_SEED).shuffle(order)
    return [items[i] for i in order]


def _digest(data):
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode('utf-8')).hexdigest()


def plan_split(split, items, num_shards, classes, texts, boxes, quality):
    """Shard tasks of a split: contiguous runs of the shuffled images (as np.linspace cuts them)."""
    items = shuffled(sorted(items))
    bounds = [len(items) * i // num_shards for i in range(num_shards + 1)]
    tasks = []
    for s in range(num_shards):
        records = [(path, rel, size, c + fmt.LABEL_OFFSET, classes[c], texts[classes[c]],
                    boxes.get(os.path.basename(path), []))
                   for path, rel, size, c in items[bounds[s]:bounds[s + 1]]]
        inputs = _digest([fmt.FORMAT, quality, [r[1:] for r in records]])
        tasks.append({'split': split, 'name': fmt.shard_name(split, s, num_shards),
                      'records': records, 'inputs': inputs, 'quality': quality})
    return tasks


# -- the work: one shard -------------------------------------------------------------------------
class ImageCoder:
    """TensorFlow's decoders and JPEG encoder in one graph and session (graph or eager mode)."""

    def __init__(self, quality, threads=0):
        import tensorflow as tf
        v1 = tf.compat.v1
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._data = v1.placeholder(tf.string, [])
            self._native_shape = tf.shape(tf.io.decode_jpeg(self._data, channels=0))
            rgb = tf.io.decode_image(self._data, channels=3, expand_animations=False)
            self._rgb_jpeg = tf.io.encode_jpeg(rgb, format='rgb', quality=quality)
            self._rgb_shape = tf.shape(rgb)
        config = v1.ConfigProto(intra_op_parallelism_threads=threads,
                                inter_op_parallelism_threads=threads)
        self._sess = v1.Session(graph=self._graph, config=config)
        self.errors = tf.errors.OpError

    def to_rgb_jpeg(self, data):
        """(RGB JPEG bytes, height, width): an RGB JPEG as it is, anything else re-encoded."""
        if data[:3] == b'\xff\xd8\xff':
            height, width, channels = self._sess.run(self._native_shape, {self._data: data})
            if channels == 3:
                return data, int(height), int(width)
        jpeg, (height, width, _) = self._sess.run([self._rgb_jpeg, self._rgb_shape],
                                                  {self._data: data})
        return jpeg, int(height), int(width)


_coder = None
_counter = None


def _init_worker(quality, counter, threads=1):
    """Start of a worker process (or of the in-process run): TensorFlow and the coder."""
    global _coder, _counter
    if threads == 1:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator handles Ctrl-C
    # Every image that fails to decode is reported here with its file name; the decoder's C++
    # error line about it would be a second, nameless message.
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    from tf_benchmarks.core.tf_startup import import_tensorflow
    import_tensorflow()
    _coder, _counter = ImageCoder(quality, threads), counter


def _count_one():
    if _counter is not None:
        with _counter.get_lock():
            _counter.value += 1


def _convert_image(path):
    with open(path, 'rb') as f:
        data = f.read()
    try:
        return _coder.to_rgb_jpeg(data)
    except _coder.errors as e:
        raise ValueError('not a readable JPEG, PNG, GIF, BMP or WebP image (%s)'
                         % _op_error_reason(e.message or ''))


def _op_error_reason(message):
    """The decoder's own words in a TensorFlow error (not the graph trace around them)."""
    noise = ('Graph execution error', 'Detected at node', 'File "', 'Node:', '[[')
    lines = [line.strip() for line in message.splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)]
    return lines[-1] if lines else 'undecodable'


def _write_records(tmp, task, skip_bad):
    """Write the task's records to `tmp`; returns (records, skipped, heights, widths)."""
    import tensorflow as tf
    skipped, heights, widths = [], [], []
    with tf.io.TFRecordWriter(tmp) as writer:
        for path, rel, _, label, synset, text, boxes in task['records']:
            try:
                jpeg, height, width = _convert_image(path)
            except (ValueError, OSError) as e:
                if not skip_bad:
                    raise UserError('cannot convert %s: %s. Remove or replace the file, or pass '
                                    '--skip_bad_images to leave it out' % (path, e))
                print('>> skipping %s: %s' % (path, e), flush=True)
                skipped.append({'file': rel, 'error': str(e)})
            else:
                writer.write(fmt.serialize(fmt.make_example(jpeg, height, width, path, label,
                                                            synset, text, boxes)))
                heights.append(height)
                widths.append(width)
            _count_one()
            crash_point('imagenet_record')
    return len(heights), skipped, heights, widths


def write_shard(task, output_dir, skip_bad):
    """Write one shard (temporary name, then rename) and its record in the state folder; the
    record is renamed first, so a shard on disk always has one."""
    path = os.path.join(output_dir, task['name'])
    with replacing(path, hidden=True) as tmp:
        count, skipped, heights, widths = _write_records(tmp, task, skip_bad)
        result = {'name': task['name'], 'inputs': task['inputs'], 'records': count,
                  'bytes': os.path.getsize(tmp), 'sha256': file_digest(tmp), 'skipped': skipped,
                  'size': _size_sums(heights, widths)}
        write_json(_state_path(output_dir, task['name']), result)
    return result


def _size_sums(heights, widths):
    if not heights:
        return None
    return {'count': len(heights), 'height': [min(heights), max(heights), sum(heights)],
            'width': [min(widths), max(widths), sum(widths)]}


# -- running the shards ----------------------------------------------------------------------------
def _clock(seconds):
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class Progress:
    """A progress line (images done, images/s, ETA) at most every `every` seconds. The rate counts
    from the first image seen done, so the workers' start-up (TensorFlow's import) is not in it."""

    def __init__(self, total, shards, every):
        self.total, self.shards, self.every = total, shards, every
        self.start = self.last = time.time()
        self.first = None  # (time, images done) when images were first seen done

    def rate(self, done):
        if self.first is None or done <= self.first[1]:
            return None
        return (done - self.first[1]) / max(time.time() - self.first[0], 1e-6)

    def line(self, done, shards_done):
        rate = self.rate(done)
        eta = _clock((self.total - done) / rate) if rate else '?'
        return ('>> %d/%d images (%.1f%%), %s images/s, ETA %s, %d/%d shards'
                % (done, self.total, 100.0 * done / max(self.total, 1),
                   '%.1f' % rate if rate else '?', eta, shards_done, self.shards))

    def maybe_print(self, done, shards_done, force=False):
        if self.first is None and done > 0:
            self.first = (time.time(), done)
        if force or time.time() - self.last >= self.every:
            self.last = time.time()
            print(self.line(done, shards_done), flush=True)

    def summary(self):
        return '>> %d images in %.1f s' % (self.total, time.time() - self.start)


def run_in_process(tasks, output_dir, skip_bad, quality, progress):
    _init_worker(quality, None, threads=0)
    results, done = [], 0
    progress.maybe_print(0, 0)
    for task in tasks:
        results.append(write_shard(task, output_dir, skip_bad))
        done += len(task['records'])
        progress.maybe_print(done, len(results))
    return results


def run_in_workers(tasks, output_dir, skip_bad, quality, num_workers, progress):
    """The shards spread over `num_workers` processes (spawned: TensorFlow does not survive a
    fork); each worker writes whole shards."""
    context = multiprocessing.get_context('spawn')
    counter = context.Value('q', 0)
    results = []
    pool = concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context,
                                                  initializer=_init_worker,
                                                  initargs=(quality, counter))
    try:
        pending = {pool.submit(write_shard, t, output_dir, skip_bad) for t in tasks}
        while pending:
            finished, pending = concurrent.futures.wait(
                pending, timeout=0.5, return_when=concurrent.futures.FIRST_COMPLETED)
            results += [f.result() for f in finished]
            progress.maybe_print(counter.value, len(results))
    except concurrent.futures.process.BrokenProcessPool:
        raise UserError('a worker process died (killed, or out of memory?) after %d of %d shards; '
                        'the finished shards are kept: run the same command again to write the '
                        'rest' % (len(results), len(tasks)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


# -- the output folder -----------------------------------------------------------------------------
def _state_path(output_dir, name):
    return os.path.join(output_dir, STATE_DIR, name + '.json')


def _load_state(output_dir, name):
    try:
        with open(_state_path(output_dir, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def remove_stale_temporaries(output_dir):
    """Temporary shards of conversions that were killed (their process is gone)."""
    for folder in (output_dir, os.path.join(output_dir, STATE_DIR)):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            base, _, pid = name.rpartition('.tmp-')
            ours = folder != output_dir or fmt.SHARD_RE.match(base[1:]) or base == (
                fmt.MANIFEST_FILE)
            if ours and pid.isdigit() and not _alive(int(pid)):
                os.remove(os.path.join(folder, name))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finished_shards(tasks, output_dir):
    """{name: recorded result} of shards already written from the same inputs; a shard file this
    converter has no record of is an error (it may be someone's data)."""
    done = {}
    for task in tasks:
        path = os.path.join(output_dir, task['name'])
        if not os.path.exists(path):
            continue
        state = _load_state(output_dir, task['name'])
        if state is None:
            raise UserError('%s already exists and was not written by this conversion; pass '
                            '--overwrite to replace it, or choose another --output_directory'
                            % path)
        if state.get('inputs') == task['inputs'] and state.get('bytes') == os.path.getsize(path):
            done[task['name']] = state
    return done


def other_shards(tasks, output_dir):
    """Shard files in the folder that are not in this plan (another shard count)."""
    planned = {t['name'] for t in tasks}
    return sorted(n for n in os.listdir(output_dir) if fmt.SHARD_RE.match(n) and n not in planned)


def clear_output(output_dir):
    """--overwrite: the manifest first (readers stop trusting the folder), then the shards."""
    for name in [fmt.MANIFEST_FILE] + sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if os.path.exists(path) and (name == fmt.MANIFEST_FILE or fmt.SHARD_RE.match(name)):
            os.remove(path)
    state = os.path.join(output_dir, STATE_DIR)
    if os.path.isdir(state):
        for name in os.listdir(state):
            os.remove(os.path.join(state, name))


def _split_info(results):
    sums = [r['size'] for r in results if r['size']]
    size = None
    if sums:
        count = sum(s['count'] for s in sums)
        size = {k: {'min': min(s[k][0] for s in sums), 'max': max(s[k][1] for s in sums),
                    'mean': round(sum(s[k][2] for s in sums) / count, 1)}
                for k in ('height', 'width')}
    return {'num_records': sum(r['records'] for r in results),
            'shards': [{'file': r['name'], 'records': r['records'], 'bytes': r['bytes'],
                        'sha256': r['sha256']} for r in results],
            'skipped': [s for r in results for s in r['skipped']], 'image_size': size}


def manifest_of(results, tasks, classes, texts, plan, settings):
    by_name = {r['name']: r for r in results}
    splits = {}
    for split in fmt.SPLITS:
        ordered = [by_name[t['name']] for t in tasks if t['split'] == split]
        if ordered:
            splits[split] = _split_info(ordered)
    manifest = fmt.build_manifest('build_imagenet_data', [(c, texts[c]) for c in classes],
                                  splits)
    manifest.update({'plan_sha256': plan, 'settings': settings})
    return manifest


# -- the conversion --------------------------------------------------------------------------------
def gather(train_dir, val_dir, validation_labels=None, validation_fraction=None):
    """(classes, {split: items}) of the input folders."""
    splits = {}
    if train_dir:
        _require_dir(train_dir, '--train_directory')
        classes = class_folders(train_dir)
        if not classes:
            raise UserError('%s has no class folders (<class>/<image files>)' % train_dir)
        splits['train'] = folder_items(train_dir, classes)
        if validation_fraction:
            splits['train'], splits['validation'] = split_by_fraction(splits['train'],
                                                                      validation_fraction)
    if val_dir:
        _require_dir(val_dir, '--validation_directory')
        if validation_fraction:
            raise UserError('pass either --validation_fraction or a validation folder, not both')
        if not train_dir:
            classes = validation_classes(val_dir, validation_labels)
        splits['validation'] = validation_items(val_dir, validation_labels, classes)
    if not splits:
        raise UserError('pass --input_dir, or --train_directory and/or --validation_directory, '
                        'or --synthetic N')
    for split, items in splits.items():
        if not items:
            raise UserError('the %s split has no images (%s)' % (split, ', '.join(
                e[1:] for e in IMAGE_EXTENSIONS)))
    return classes, splits


def validation_classes(val_dir, labels_file):
    """The classes of a validation folder given without a training folder."""
    if class_folders(val_dir) or not labels_file:
        return class_folders(val_dir)
    return sorted(set(read_validation_labels(labels_file, len(image_files(val_dir)))))


def check_shard_counts(splits, shards):
    for split, items in splits.items():
        if not 1 <= shards[split] <= len(items):
            raise UserError('--%s_shards %d must be between 1 and the %d images of the %s split'
                            % (split, shards[split], len(items), split))


def _existing_manifest(output_dir, plan, overwrite):
    """The manifest of a finished conversion of the same plan (nothing to do), else None."""
    path = os.path.join(output_dir, fmt.MANIFEST_FILE)
    if not os.path.exists(path) or overwrite:
        return None
    try:
        manifest = fmt.read_manifest(path)
    except UserError as e:
        raise UserError('%s. Pass --overwrite to convert again' % e)
    if manifest.get('plan_sha256') != plan:
        raise UserError('%s already holds a finished conversion of other images or settings; '
                        'pass --overwrite to replace it, or choose another --output_directory'
                        % output_dir)
    return manifest


def convert(output_dir, train_dir=None, val_dir=None, validation_labels=None,
            validation_fraction=None, synset_names=None, bounding_box_file=None, shards=None,
            num_workers=1, skip_bad_images=False, overwrite=False, quality=100,
            progress_seconds=5.0):
    """Convert the folders to shards and manifest.json in `output_dir`; returns the manifest."""
    shards = dict(DEFAULT_SHARDS, **(shards or {}))
    classes, splits = gather(train_dir, val_dir, validation_labels, validation_fraction)
    check_shard_counts(splits, shards)
    texts = read_synset_names(synset_names, classes) if synset_names else {c: c for c in classes}
    boxes = read_bounding_boxes(bounding_box_file) if bounding_box_file else {}
    tasks = [t for split in fmt.SPLITS if split in splits for t in plan_split(
        split, splits[split], shards[split], classes, texts, boxes, quality)]
    plan = _digest([[t['name'], t['inputs']] for t in tasks] + [[c, texts[c]] for c in classes])
    os.makedirs(output_dir, exist_ok=True)
    manifest = _existing_manifest(output_dir, plan, overwrite)
    if manifest is not None:
        print('>> %s already holds this conversion (manifest.json); nothing to do' % output_dir)
        return manifest
    os.makedirs(os.path.join(output_dir, STATE_DIR), exist_ok=True)
    return _write_all(output_dir, tasks, classes, texts, plan, overwrite, dict(
        shards=shards, skip_bad_images=skip_bad_images, quality=quality, shuffle_seed=SHUFFLE_SEED,
        validation_fraction=validation_fraction), num_workers, progress_seconds)


def _write_all(output_dir, tasks, classes, texts, plan, overwrite, settings, num_workers,
               progress_seconds):
    if overwrite:
        clear_output(output_dir)
    remove_stale_temporaries(output_dir)
    leftovers = other_shards(tasks, output_dir)
    if leftovers:
        raise UserError('%s holds shards of another conversion (%s ...); remove them or pass '
                        '--overwrite' % (output_dir, leftovers[0]))
    done = finished_shards(tasks, output_dir)
    todo = [t for t in tasks if t['name'] not in done]
    total = sum(len(t['records']) for t in tasks)
    print('>> %d classes, %d images in %d shards; %d shards already written, %d to write with %d '
          'worker(s)' % (len(classes), total, len(tasks), len(done), len(todo),
                         min(num_workers, len(todo)) or 0), flush=True)
    progress = Progress(sum(len(t['records']) for t in todo), len(todo), progress_seconds)
    args = (todo, output_dir, settings['skip_bad_images'], settings['quality'])
    if num_workers <= 1 or len(todo) <= 1:
        results = run_in_process(*args, progress) if todo else []
    else:
        results = run_in_workers(*args, min(num_workers, len(todo)), progress)
    if todo:
        progress.maybe_print(progress.total, len(todo), force=True)
        print(progress.summary(), flush=True)
    manifest = manifest_of(list(done.values()) + results, tasks, classes, texts, plan, settings)
    write_json(os.path.join(output_dir, fmt.MANIFEST_FILE), manifest)
    for task in tasks:
        os.remove(_state_path(output_dir, task['name']))
    os.rmdir(os.path.join(output_dir, STATE_DIR))
    print('>> wrote %s' % os.path.join(output_dir, fmt.MANIFEST_FILE), flush=True)
    return manifest


def synthetic_shards(num_train):
    """Shard counts of a synthetic set: about 250 images per shard, at least 2 training shards."""
    return {'train': max(2, min(1024, num_train // 250)),
            'validation': max(1, min(128, num_train // 5 // 250))}


def convert_synthetic(output_dir, num_train, image_size, num_classes, seed=0, shards=None,
                      **kwargs):
    """Generate a tree of JPEGs in a temporary folder beside the output and convert it."""
    if num_train < num_classes or num_classes < 1 or image_size < 8:
        raise UserError('--synthetic N needs N >= --synthetic_classes >= 1 and --image_size >= 8')
    from datasets.synthetic_imagenet import write_tree
    os.makedirs(output_dir, exist_ok=True)
    shards = dict(synthetic_shards(num_train), **(shards or {}))
    num_val = max(num_classes, num_train // 5)
    with tempfile.TemporaryDirectory(dir=output_dir, prefix='.synthetic-tree-') as tree:
        _init_tf()
        train, val, names = write_tree(tree, num_train, num_val, num_classes, image_size, seed)
        return convert(output_dir, train, val, synset_names=names, shards=shards, **kwargs)


def _init_tf():
    from tf_benchmarks.core.tf_startup import import_tensorflow
    import_tensorflow()


def input_folders(input_dir, validation_fraction):
    """(train dir, validation dir) of --input_dir: its train/ and val/ (or validation/), or the
    folder itself as the classes to split by --validation_fraction."""
    _require_dir(input_dir, '--input_dir')
    train = os.path.join(input_dir, 'train')
    if os.path.isdir(train):
        if validation_fraction:
            return train, None
        for name in ('val', 'validation'):
            if os.path.isdir(os.path.join(input_dir, name)):
                return train, os.path.join(input_dir, name)
        return train, None
    if not validation_fraction:
        raise UserError('%s has no train/ folder; if it holds the class folders themselves, pass '
                        '--validation_fraction F (e.g. 0.1) to split them into train and '
                        'validation' % input_dir)
    return input_dir, None


# -- the command -----------------------------------------------------------------------------------
def define_flags():
    from absl import flags
    flags.DEFINE_string('output_directory', None, 'Folder of the shards and manifest.json.')
    flags.DEFINE_string('input_dir', None, 'ImageFolder root: train/ and val/ (or validation/), '
                        'or the class folders themselves with --validation_fraction.')
    flags.DEFINE_string('train_directory', None, 'Training images: <class>/<image files>.')
    flags.DEFINE_string('validation_directory', None, 'Validation images: class folders, or flat '
                        'with --validation_labels.')
    flags.DEFINE_string('validation_labels', None, 'imagenet_2012_validation_synset_labels.txt: '
                        'one synset per line for the sorted files of a flat validation folder.')
    flags.DEFINE_float('validation_fraction', None, 'Split each class of the training folder: '
                       'this fraction becomes the validation set (deterministic).')
    flags.DEFINE_string('synset_names', None, '"<synset><TAB><text>" lines (imagenet_metadata.txt)'
                        ' for image/class/text; default: the synset.')
    flags.DEFINE_string('bounding_box_file', None, 'CSV of <file>,<xmin>,<ymin>,<xmax>,<ymax> in '
                        '[0, 1] (process_bounding_boxes.py output).')
    flags.DEFINE_integer('train_shards', 1024, 'Training shards.')
    flags.DEFINE_integer('validation_shards', 128, 'Validation shards.')
    flags.DEFINE_integer('num_workers', os.cpu_count() or 1, 'Processes writing shards.')
    flags.DEFINE_bool('skip_bad_images', False, 'Leave out unreadable images (listed in the '
                      'manifest) instead of stopping.')
    flags.DEFINE_bool('overwrite', False, 'Replace a finished conversion in --output_directory.')
    flags.DEFINE_integer('reencode_quality', 100, 'JPEG quality of re-encoded (PNG, CMYK, '
                         'grayscale) images; 100 as the original.')
    flags.DEFINE_float('progress_seconds', 5.0, 'Seconds between progress lines.')
    flags.DEFINE_integer('synthetic', None, 'Write a synthetic set: N training images (and N/5 '
                         'validation) of generated JPEGs.')
    flags.DEFINE_integer('synthetic_classes', 10, 'Classes of the synthetic set.')
    flags.DEFINE_integer('image_size', 64, 'Typical side of the synthetic images.')
    flags.DEFINE_integer('seed', 0, 'Seed of the synthetic set.')


def main(argv):
    from absl import flags
    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise UserError('unexpected arguments %s' % ' '.join(argv[1:]))
    if not FLAGS.output_directory:
        raise UserError('--output_directory is required')
    shards = {s: FLAGS[s + '_shards'].value for s in fmt.SPLITS if FLAGS[s + '_shards'].present}
    common = dict(shards=shards, num_workers=FLAGS.num_workers, overwrite=FLAGS.overwrite,
                  skip_bad_images=FLAGS.skip_bad_images, quality=FLAGS.reencode_quality,
                  progress_seconds=FLAGS.progress_seconds)
    if FLAGS.synthetic is not None:
        convert_synthetic(FLAGS.output_directory, FLAGS.synthetic, FLAGS.image_size,
                          FLAGS.synthetic_classes, FLAGS.seed, **common)
        return
    train, val = FLAGS.train_directory, FLAGS.validation_directory
    if FLAGS.input_dir:
        if train or val:
            raise UserError('pass either --input_dir or --train_directory/--validation_directory')
        train, val = input_folders(FLAGS.input_dir, FLAGS.validation_fraction)
    convert(FLAGS.output_directory, train, val, FLAGS.validation_labels, FLAGS.validation_fraction,
            FLAGS.synset_names, FLAGS.bounding_box_file, **common)


if __name__ == '__main__':
    from absl import app
    define_flags()
    app.run(exit_on_user_error(main))
