"""graphrisk: find fraud rings in an entity graph.

The package holds what every stage shares: configuration, the event and graph schema,
normalisation and pseudonymisation, and the client that runs the statements in ``cypher/``.
"""

__version__ = "0.1.0"
