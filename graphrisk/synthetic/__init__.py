"""Synthetic entity-graph events with planted fraud rings, for training and evaluation.

``generate`` is the entry point; see ``graphrisk.synthetic.generator`` for the output layout
and ``graphrisk.synthetic.rings`` for the typologies.
"""

from graphrisk.synthetic.generator import DEFAULT_START, GenerationReport, generate
from graphrisk.synthetic.noise import INVALID_KINDS
from graphrisk.synthetic.rings import TYPOLOGIES

__all__ = ["DEFAULT_START", "INVALID_KINDS", "TYPOLOGIES", "GenerationReport", "generate"]
