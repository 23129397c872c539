"""Write CIFAR-10 batches (the official pickle layout) as an ImageFolder tree of JPEGs, for running
the ImageNet-format pipeline on real images:

    OUT_DIR/train/<class>/<batch>_<index>.JPEG    from data_batch_*
    OUT_DIR/val/<class>/test_batch_<index>.JPEG   from test_batch

Each 32x32 image is resized bilinearly to --size (64) with TensorFlow's image ops and encoded as
an RGB JPEG of quality 95. Class folders are CIFAR-10's class names in label order with a two-digit
prefix (00_airplane, 01_automobile, ...), so their sorted order is the label order. The batches are
read with the project's restricted unpickler, never pickle.load.

    python bench/cifar_as_imagefolder.py /work/shared/data/cifar10-subset/cifar-10-batches-py \\
        /tmp/cifar64 --size 64
    python datasets/build_imagenet_data.py --input_dir /tmp/cifar64 --output_directory /tmp/cifar64-tf
"""

import argparse
import glob
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_benchmarks.files.safe_pickle import safe_load  # noqa: E402

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')


def read_batch(path):
    """(images uint8 [N, 32, 32, 3], labels int [N]) of one CIFAR-10 batch file."""
    with open(path, 'rb') as f:
        batch = safe_load(f, encoding='bytes')
    data = np.asarray(batch[b'data'], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return data, np.asarray(batch[b'labels'], dtype=np.int64)


def write_split(batch_files, out_dir, size):
    folders = ['%02d_%s' % (i, name) for i, name in enumerate(CLASSES)]
    for name in folders:
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
    count = 0
    for path in batch_files:
        images, labels = read_batch(path)
        prefix = os.path.basename(path)
        for start in range(0, len(images), 256):
            chunk = tf.image.resize(images[start:start + 256], (size, size), method='bilinear')
            chunk = tf.cast(tf.clip_by_value(tf.round(chunk), 0, 255), tf.uint8)
            for j, image in enumerate(chunk):
                i = start + j
                data = tf.io.encode_jpeg(image, format='rgb', quality=95).numpy()
                name = '%s_%05d.JPEG' % (prefix, i)
                with open(os.path.join(out_dir, folders[labels[i]], name), 'wb') as f:
                    f.write(data)
                count += 1
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('subset_dir', help='folder holding data_batch_* and test_batch')
    parser.add_argument('out_dir')
    parser.add_argument('--size', type=int, default=64, help='output side in pixels (64)')
    args = parser.parse_args(argv)
    train = sorted(glob.glob(os.path.join(args.subset_dir, 'data_batch_*')))
    test = os.path.join(args.subset_dir, 'test_batch')
    if not train or not os.path.isfile(test):
        sys.exit('%s holds no data_batch_* or no test_batch' % args.subset_dir)
    n_train = write_split(train, os.path.join(args.out_dir, 'train'), args.size)
    n_val = write_split([test], os.path.join(args.out_dir, 'val'), args.size)
    print('wrote %d training and %d validation JPEGs of %dx%d to %s'
          % (n_train, n_val, args.size, args.size, args.out_dir))


if __name__ == '__main__':
    main()
