"""Qt-free core: study loading, preprocessing, the CNN, inference, detection, voting, export.

Nothing in this package imports Qt. TensorFlow is imported lazily (only by the model and
inference modules, inside functions) so that callers can show a window before it loads.
"""
