"""datasets/build_imagenet_data.py and tf_benchmarks/data/imagenet_records.py: the record keys and
bytes, re-encoded PNG/CMYK/grayscale pixels, labels in sorted synset order, shards, bounding boxes,
the flat validation folder, refused devkit labels, bad images, --validation_fraction, a killed
conversion resumed byte for byte, the manifest and its validation, foreign shards' manifest."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import build_imagenet_data as converter
from datasets import synthetic_imagenet
from tf_benchmarks.core.errors import UserError
from tf_benchmarks.data import imagenet_records as fmt
from tf_benchmarks.files.atomic import file_digest

from conftest import REPO

SCRIPT = os.path.join(REPO, 'datasets', 'build_imagenet_data.py')
# Created in this (unsorted) order; labels follow the sorted order n00000001, n01000002, n03000000.
CLASSES = ['n01000002', 'n00000001', 'n03000000']
TEXTS = {'n00000001': 'tench, Tinca tinca', 'n01000002': 'goldfish', 'n03000000': 'shark'}
SHARDS = {'train': 3, 'validation': 2}
BOXES = {'n00000001_1.JPEG': [(0.1, 0.2, 0.5, 0.75), (0.0, 0.0, 1.0, 1.0)],
         'n03000000_0.JPEG': [(0.25, 0.125, 0.5, 0.625)]}


def gradient(height, width, seed):
    """A smooth RGB image (small JPEG error)."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    rng = np.random.default_rng(seed)
    channels = [rng.uniform(20, 120) + rng.uniform(40, 120) * (a * x + (1 - a) * y)
                for a in rng.uniform(0, 1, 3)]
    return np.stack(channels, -1).round().astype(np.uint8)


def decode(jpeg, channels=3):
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        return sess.run(tf.io.decode_jpeg(jpeg, channels=channels))


def records_of(directory, split=None):
    """{file name: fields} of every record of the shards in `directory`, and the shard names."""
    names = sorted(n for n in os.listdir(directory) if fmt.SHARD_RE.match(n)
                   and (split is None or n.startswith(split)))
    fields = {}
    for name in names:
        for record in fmt.iter_records(os.path.join(directory, name)):
            f = fmt.example_fields(record)
            fields[f['image/filename'].decode()] = dict(f, shard=name, record=record)
    return fields, names


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    """train/ (3 classes x 8, with a PNG, a CMYK and a grayscale file named .JPEG) and val/
    (3 x 2), a names file and a bounding box CSV."""
    root = tmp_path_factory.mktemp('tree')
    rng = np.random.default_rng(0)
    encoder = synthetic_imagenet.JpegEncoder(quality=92)
    sources = {}
    for split, count, tag in (('train', 8, ''), ('val', 2, 'val')):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                image = synthetic_imagenet.generate_image(rng, c, 20)
                (folder / ('%s_%s%d.JPEG' % (name, tag, i))).write_bytes(encoder(image))
    special = root / 'train' / 'n01000002'
    for kind, mode in (('png', 'RGB'), ('cmyk', 'CMYK'), ('gray', 'L')):
        pixels = gradient(18, 26, len(kind))
        sources[kind] = pixels if mode != 'L' else pixels[..., :1]
        image = Image.fromarray(pixels).convert(mode)
        image.save(special / ('n01000002_%s.JPEG' % kind), 'PNG' if kind == 'png' else 'JPEG',
                   quality=98)
        if mode == 'L':
            sources[kind] = np.asarray(image)[..., None]
    encoder.close()
    (root / 'names.txt').write_text(''.join('%s\t%s\n' % kv for kv in sorted(TEXTS.items())))
    (root / 'boxes.csv').write_text(''.join('%s,%s,%s,%s,%s\n' % ((f,) + b)
                                            for f, boxes in BOXES.items() for b in boxes)
                                    + 'missing_file.JPEG,0.1,0.1,0.2,0.2\n')
    return root, sources


def convert(tree_root, out, **kwargs):
    args = dict(synset_names=str(tree_root / 'names.txt'), shards=SHARDS,
                bounding_box_file=str(tree_root / 'boxes.csv'))
    args.update(kwargs)
    return converter.convert(str(out), str(tree_root / 'train'), str(tree_root / 'val'), **args)


@pytest.fixture(scope='module')
def converted(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp('converted')
    manifest = convert(tree[0], out)
    return out, manifest


def test_every_key_and_value_of_the_records(tree, converted):
    root, _ = tree
    out, _ = converted
    fields, names = records_of(out)
    assert names == ['train-0000%d-of-00003' % i for i in range(3)] + [
        'validation-0000%d-of-00002' % i for i in range(2)]
    assert len(fields) == 33
    labels = {name: i + 1 for i, name in enumerate(sorted(CLASSES))}
    for filename, f in fields.items():
        synset = filename.split('_')[0]
        assert set(f) - {'shard', 'record'} == set(fmt.KEYS)
        assert (f['image/channels'], f['image/colorspace'], f['image/format']) == (3, b'RGB',
                                                                                    b'JPEG')
        assert f['image/class/label'] == labels[synset]
        assert f['image/class/synset'] == synset.encode()
        assert f['image/class/text'] == TEXTS[synset].encode()
        image = decode(f['image/encoded'])
        assert image.shape == (f['image/height'], f['image/width'], 3)
        split = 'train' if f['shard'].startswith('train') else 'val'
        source = (root / split / synset / filename).read_bytes()
        if 'png' not in filename and 'cmyk' not in filename and 'gray' not in filename:
            assert f['image/encoded'] == source  # RGB JPEGs are stored as they are
        boxes = BOXES.get(filename, [])
        assert f['image/object/bbox/label'] == [labels[synset]] * len(boxes)
        for k, key in enumerate(fmt.BBOX_KEYS):
            np.testing.assert_allclose(f[key], [b[k] for b in boxes], atol=1e-7)


def test_png_cmyk_and_grayscale_come_out_as_rgb_jpeg(tree, converted):
    _, sources = tree
    fields, _ = records_of(converted[0])
    for kind, pixels in sources.items():
        f = fields['n01000002_%s.JPEG' % kind]
        assert f['image/encoded'][:3] == b'\xff\xd8\xff'
        assert decode(f['image/encoded'], channels=0).shape[2] == 3
        image = decode(f['image/encoded']).astype(float)
        expected = np.broadcast_to(pixels, image.shape).astype(float)
        assert np.abs(image - expected).mean() < 3.0, kind
        assert np.abs(image - expected).max() < 30, kind


def test_shuffle_shards_and_manifest_match_the_files(converted):
    out, manifest = converted
    assert manifest == fmt.read_manifest(str(out))
    assert manifest['num_classes'] == 3 and manifest['label_offset'] == 1
    assert [c['synset'] for c in manifest['classes']] == sorted(CLASSES)
    assert [c['text'] for c in manifest['classes']] == [TEXTS[c] for c in sorted(CLASSES)]
    counts = {'train': [9, 9, 9], 'validation': [3, 3]}
    for split, info in manifest['splits'].items():
        assert [s['records'] for s in info['shards']] == counts[split]
        assert info['num_records'] == sum(counts[split]) and info['skipped'] == []
        for shard in info['shards']:
            path = os.path.join(out, shard['file'])
            assert shard['sha256'] == file_digest(path)
            assert shard['bytes'] == os.path.getsize(path)
            assert sum(1 for _ in fmt.iter_records(path)) == shard['records']
        assert 10 < info['image_size']['height']['min'] <= info['image_size']['height']['max']
    # The original's order: sorted, then random.seed(12345)'s shuffle.
    fields, names = records_of(out, 'train')
    in_file_order = [fmt.example_fields(r)['image/filename'].decode() for n in names
                     for r in fmt.iter_records(os.path.join(out, n))]
    ordered = sorted(fields, key=lambda n: (n.split('_')[0], n))
    import random
    random.seed(12345)
    index = list(range(len(ordered)))
    random.shuffle(index)
    assert in_file_order == [ordered[i] for i in index]
    assert not os.path.exists(os.path.join(out, converter.STATE_DIR))


def _original_example(label, boxes):
    """A record built exactly as tensorflow/models' _convert_to_example builds it."""
    def int64(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v if isinstance(v, list)
                                                              else [v]))

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def byte(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))
    xmin, ymin, xmax, ymax = ([b[k] for b in boxes] for k in range(4))
    return tf.train.Example(features=tf.train.Features(feature={
        'image/height': int64(5), 'image/width': int64(7), 'image/colorspace': byte(b'RGB'),
        'image/channels': int64(3), 'image/class/label': int64(label),
        'image/class/synset': byte(b'n02119477'), 'image/class/text': byte(b'red fox'),
        'image/object/bbox/xmin': floats(xmin), 'image/object/bbox/xmax': floats(xmax),
        'image/object/bbox/ymin': floats(ymin), 'image/object/bbox/ymax': floats(ymax),
        'image/object/bbox/label': int64([label] * len(xmin)),
        'image/format': byte(b'JPEG'), 'image/filename': byte(b'n02119477_1.JPEG'),
        'image/encoded': byte(b'\xff\xd8\xff-jpeg-bytes')})).SerializeToString()


def test_records_of_the_original_script_parse_unchanged():
    boxes = [(0.1, 0.2, 0.3, 0.4), (0.5, 0.25, 0.75, 1.0)]
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        serialized = tf.compat.v1.placeholder(tf.string, [])
        parsed = fmt.parse_example(serialized)
        full = fmt.parse_features(serialized)
        image, label, bbox, text = sess.run(parsed, {serialized: _original_example(388, boxes)})
        _, _, no_box, _ = sess.run(parsed, {serialized: _original_example(1, [])})
        values = sess.run(full, {serialized: _original_example(388, boxes)})
    assert (image, label, text) == (b'\xff\xd8\xff-jpeg-bytes', 388, b'red fox')
    np.testing.assert_allclose(bbox, [[[0.2, 0.1, 0.4, 0.3], [0.25, 0.5, 1.0, 0.75]]], atol=1e-7)
    assert no_box.shape == (1, 0, 4)
    assert values['image/object/bbox/label'].tolist() == [388, 388]
    assert (values['image/height'], values['image/width'], values['image/channels']) == (5, 7, 3)
    ours = fmt.serialize(fmt.make_example(b'\xff\xd8\xff-jpeg-bytes', 5, 7, 'x/n02119477_1.JPEG',
                                          388, 'n02119477', 'red fox', boxes))
    assert fmt.example_fields(ours) == fmt.example_fields(_original_example(388, boxes))


def test_flat_validation_folder_and_refused_devkit_labels(tree, tmp_path):
    root, _ = tree
    flat = tmp_path / 'flat'
    flat.mkdir()
    members = sorted((root / 'val').glob('*/*.JPEG'))
    names = ['ILSVRC2012_val_%08d.JPEG' % (i + 1) for i in range(len(members))]
    for name, member in zip(names, members):
        shutil.copy(member, flat / name)
    labels = tmp_path / 'labels.txt'
    labels.write_text(''.join(m.parent.name + '\n' for m in members))
    manifest = converter.convert(str(tmp_path / 'out'), str(root / 'train'), str(flat),
                                 validation_labels=str(labels), shards=SHARDS)
    fields, _ = records_of(tmp_path / 'out', 'validation')
    assert sorted(fields) == names
    for name, member in zip(names, members):
        assert fields[name]['image/class/synset'] == member.parent.name.encode()
        assert fields[name]['image/class/label'] == sorted(CLASSES).index(member.parent.name) + 1
        assert fields[name]['image/class/text'] == member.parent.name.encode()  # no names file
    assert manifest['splits']['validation']['num_records'] == 6
    labels.write_text(''.join('%d\n' % (i % 3 + 1) for i in range(6)))
    with pytest.raises(UserError, match='devkit.*imagenet_2012_validation_synset_labels.txt'):
        converter.convert(str(tmp_path / 'out2'), str(root / 'train'), str(flat),
                          validation_labels=str(labels), shards=SHARDS)
    labels.write_text('n00000001\n' * 5)
    with pytest.raises(UserError, match='5 labels for 6 validation images'):
        converter.convert(str(tmp_path / 'out2'), str(root / 'train'), str(flat),
                          validation_labels=str(labels), shards=SHARDS)


def test_bad_image_is_one_error_or_skipped(tree, tmp_path):
    root, _ = tree
    bad_tree = tmp_path / 'bad'
    shutil.copytree(root / 'train', bad_tree / 'train')
    bad = bad_tree / 'train' / 'n03000000' / 'n03000000_broken.JPEG'
    bad.write_bytes(b'\xff\xd8\xff\xe0 this is not really a JPEG')
    with pytest.raises(UserError, match='cannot convert %s: not a readable .* image '
                       r'\(jpeg::Uncompress failed. Invalid JPEG data' % bad):
        converter.convert(str(tmp_path / 'out'), str(bad_tree / 'train'), shards={'train': 1})
    assert [n for n in os.listdir(tmp_path / 'out') if not n.startswith('.build')] == []
    manifest = converter.convert(str(tmp_path / 'out'), str(bad_tree / 'train'),
                                 shards={'train': 1}, skip_bad_images=True)
    assert manifest['splits']['train']['num_records'] == 27
    assert [s['file'] for s in manifest['splits']['train']['skipped']] == [
        'n03000000/n03000000_broken.JPEG']
    assert 'n03000000_broken.JPEG' not in records_of(tmp_path / 'out')[0]


def test_validation_fraction_splits_each_class_deterministically(tree, tmp_path):
    root, _ = tree
    train, val = converter.input_folders(str(root / 'train'), 0.25)
    assert (train, val) == (str(root / 'train'), None)
    manifest = converter.convert(str(tmp_path / 'out'), train, validation_fraction=0.25,
                                 shards={'train': 2, 'validation': 1})
    assert manifest['splits']['train']['num_records'] == 20
    assert manifest['splits']['validation']['num_records'] == 7  # round(0.25 x 11, 8, 8)
    fields, _ = records_of(tmp_path / 'out')
    val_names = sorted(n for n, f in fields.items() if f['shard'].startswith('validation'))
    assert sorted(n.split('_')[0] for n in val_names) == sorted(CLASSES * 2 + ['n01000002'])
    items = converter.folder_items(train, sorted(CLASSES))
    assert [i[1].split('/')[1] for i in converter.split_by_fraction(items, 0.25)[1]] == val_names
    with pytest.raises(UserError, match='no train/ folder.*--validation_fraction'):
        converter.input_folders(str(root / 'train'), None)


def test_finished_conversion_is_kept_and_a_different_one_refused(tree, converted):
    out, manifest = converted
    before = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)}
    assert convert(tree[0], out) == manifest  # nothing to do
    assert {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)} == before
    with pytest.raises(UserError, match='finished conversion of other images.*--overwrite'):
        convert(tree[0], out, synset_names=None)


def _manifest_copy(converted, tmp_path):
    out, _ = converted
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy)
    return copy, json.loads((copy / 'manifest.json').read_text())


@pytest.mark.parametrize('damage, message', [
    (lambda m: 'not json', 'not readable JSON'),
    (lambda m: dict(m, format='other'), '"format" must be'),
    (lambda m: dict(m, num_classes=4), 'num_classes'),
    (lambda m: dict(m, label_offset=0), 'label_offset'),
    (lambda m: m['classes'][1].update(label=1), r'classes\[1\]'),
    (lambda m: m['splits']['train'].update(num_records=3), 'not the sum'),
    (lambda m: m['splits']['train']['shards'][0].update(sha256='x'), 'sha256'),
    (lambda m: m['splits']['validation'].update(shards=m['splits']['validation']['shards'][1:]),
     'file must be validation-00000-of-00001'),
    (lambda m: m['splits']['train']['shards'][2].update(bytes=5), 'has .* bytes, but'),
])
def test_malformed_manifest_is_one_user_error(converted, tmp_path, damage, message):
    copy, manifest = _manifest_copy(converted, tmp_path)
    damaged = damage(manifest)
    text = damaged if isinstance(damaged, str) else json.dumps(manifest if damaged is None
                                                               else damaged)
    (copy / 'manifest.json').write_text(text)
    with pytest.raises(UserError, match=message) as error:
        fmt.read_manifest(str(copy))
    assert str(copy) in str(error.value)


def test_manifest_of_foreign_shards_is_computed_once_and_cached(converted, tmp_path,
                                                                monkeypatch):
    copy, ours = _manifest_copy(converted, tmp_path)
    os.remove(copy / 'manifest.json')
    lines = []
    computed = fmt.load_or_compute_manifest(str(copy), log=lines.append)
    assert computed['splits'] == {s: dict(i, skipped=[]) for s, i in ours['splits'].items()}
    assert computed['classes'] == ours['classes'] and computed['origin'] == 'computed from shards'
    assert json.loads((copy / 'manifest.json').read_text()) == computed
    monkeypatch.setattr(fmt, 'scan_shard', None)  # a second call reads the cache only
    assert fmt.load_or_compute_manifest(str(copy)) == computed
    os.remove(copy / 'manifest.json')
    monkeypatch.undo()

    def read_only(path, data):
        raise PermissionError(13, 'Permission denied', path)
    monkeypatch.setattr(fmt, 'write_json', read_only)
    lines.clear()
    assert fmt.load_or_compute_manifest(str(copy), log=lines.append) == computed
    assert 'cannot cache the computed manifest' in lines[-1]
    os.remove(copy / 'train-00001-of-00003')
    with pytest.raises(UserError, match='lacks train-00001-of-00003'):
        fmt.compute_manifest(str(copy))


def test_killed_conversion_resumes_to_the_same_bytes(tree, converted, tmp_path):
    """Workers killed mid-way (SIGKILL at a crash point); the re-run keeps the finished shards
    untouched and the result is byte-identical to an uninterrupted run."""
    root, _ = tree
    out = tmp_path / 'out'
    args = ['--output_directory', str(out), '--input_dir', str(root), '--num_workers', '2',
            '--synset_names', str(root / 'names.txt'), '--bounding_box_file',
            str(root / 'boxes.csv'), '--train_shards', '3', '--validation_shards', '2']
    result = subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True,
                            env=dict(os.environ, PRUNING_CRASH_AT='imagenet_record:10'))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith('error: a worker process died')
    assert 'Traceback' not in result.stderr
    finished = sorted(n for n in os.listdir(out) if fmt.SHARD_RE.match(n))
    assert 1 <= len(finished) < 5 and not os.path.exists(out / 'manifest.json')
    stamps = {n: (os.stat(out / n).st_mtime_ns, (out / n).read_bytes()) for n in finished}
    manifest = converter.convert(str(out), str(root / 'train'), str(root / 'val'),
                                 synset_names=str(root / 'names.txt'), shards=SHARDS,
                                 bounding_box_file=str(root / 'boxes.csv'))
    assert {n: (os.stat(out / n).st_mtime_ns, (out / n).read_bytes()) for n in finished} == stamps
    reference, expected = converted
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference))  # no temporaries left
    for name in os.listdir(reference):
        if name != 'manifest.json':
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    assert manifest['splits'] == expected['splits']


def test_command_line_errors_are_one_line(tree, tmp_path):
    root, _ = tree
    labels = tmp_path / 'ILSVRC2012_validation_ground_truth.txt'
    labels.write_text('490\n361\n')
    flat = tmp_path / 'val'
    flat.mkdir()
    for i in range(2):
        shutil.copy(root / 'val' / 'n00000001' / 'n00000001_val0.JPEG',
                    flat / ('ILSVRC2012_val_%08d.JPEG' % (i + 1)))
    result = subprocess.run([sys.executable, SCRIPT, '--output_directory', str(tmp_path / 'o'),
                             '--train_directory', str(root / 'train'), '--validation_directory',
                             str(flat), '--validation_labels', str(labels)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith('error: %s holds numbers' % labels)


def test_synthetic_set_goes_through_the_tree_conversion(tmp_path):
    manifest = converter.convert_synthetic(str(tmp_path), 14, 24, 7, seed=3,
                                           shards={'train': 2, 'validation': 1})
    assert manifest['num_classes'] == 7
    assert [c['text'] for c in manifest['classes']] == [synthetic_imagenet.class_text(c)
                                                        for c in range(7)]
    assert (manifest['splits']['train']['num_records'],
            manifest['splits']['validation']['num_records']) == (14, 7)
    fields, _ = records_of(tmp_path)
    train = [f for f in fields.values() if f['shard'].startswith('train')]
    assert sorted(f['image/class/label'] for f in train) == sorted(list(range(1, 8)) * 2)
    shapes = {(f['image/height'], f['image/width']) for f in fields.values()}
    assert len(shapes) > 10 and all(0.74 < w / h < 1.36 for h, w in shapes)
    assert sorted(os.listdir(tmp_path)) == ['manifest.json', 'train-00000-of-00002',
                                           'train-00001-of-00002', 'validation-00000-of-00001']
    for texture in range(len(synthetic_imagenet.TEXTURES)):  # every class survives a flip
        field = synthetic_imagenet._pattern(texture, np.random.default_rng(texture), 30, 41)
        np.testing.assert_allclose(field, field[:, ::-1], atol=1e-9)


def test_progress_line_counts_from_the_first_image():
    progress = converter.Progress(1000, 8, every=0)
    assert progress.line(0, 0) == '>> 0/1000 images (0.0%), ? images/s, ETA ?, 0/8 shards'
    progress.first = (progress.start - 10, 100)
    assert progress.line(300, 2).startswith('>> 300/1000 images (30.0%), 20.0 images/s, '
                                            'ETA 0:00:35, 2/8 shards')
