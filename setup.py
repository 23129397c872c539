"""Installs the backbone (`tf_benchmarks`) and the two pruning drivers (`aofp`, `csgd`)."""

from setuptools import find_packages, setup

setup(
    name='aofp-csgd-tf2',
    version='0.1.0',
    description='AOFP (ICML 2019) and C-SGD (CVPR 2019) filter pruning, ported to TensorFlow 2 '
                'in the TF1 graph style',
    python_requires='>=3.9',
    packages=find_packages(include=['tf_benchmarks*', 'aofp*', 'csgd*']),
    install_requires=[
        'tensorflow>=2.16',
        'numpy',
        'h5py',
        'absl-py',
        'scikit-learn',
        'matplotlib',
    ],
    # `export --onnx`; the versions tested with tensorflow 2.21, numpy 2.4 and protobuf 7.36
    extras_require={'test': ['pytest', 'pytest-xdist'],
                    'onnx': ['tf2onnx>=1.17.0', 'onnx>=1.23.2', 'onnxruntime>=1.32.0']},
    entry_points={'console_scripts': [
        'aofp-standalone=aofp.aofp_standalone:run',
        'csgd-standalone=csgd.csgd_standalone:run',
    ]},
)
