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
    extras_require={'test': ['pytest', 'pytest-xdist']},
    entry_points={'console_scripts': [
        'aofp-standalone=aofp.aofp_standalone:run',
        'csgd-standalone=csgd.csgd_standalone:run',
    ]},
)
