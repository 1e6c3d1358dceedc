"""Node risk scoring: loaders, features, models, calibration, thresholds and evaluation.

The pieces a registry or CLI calls are re-exported from their modules; see ``gnn.data``,
``gnn.models`` and ``gnn.evaluate``.
"""
