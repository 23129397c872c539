"""The network description: the traced data model (`trace`), the plain-Python builder that records
it (`builder`), the graph builder that also emits TensorFlow ops (`convnet_builder`), the aligned
training batch norm, and FLOPs counting. May import `core` only."""
