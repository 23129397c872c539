"""C-SGD (CVPR 2019): clustering, the centripetal rule, targets, clusters files, presets, the C-SGD
pipeline, the magnitude baseline and the driver (`csgd_standalone.py`)."""
