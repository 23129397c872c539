"""Using a result: the inference SavedModel with BN folded, TFLite conversion, the per-layer summary
and the report's plots; and bringing in a start: torchvision's ResNet-50 as a weight file. Above
`engine` because an export builds a graph and opens a session through it; may import every package
below `commands`."""
