"""The entity graph's schema: node labels, relationship types and the edge types they form.

Every relationship points away from a ``User``. Relationships carry ``count``,
``first_seen`` and ``last_seen`` (epoch ms); payment relationships also carry
``amount_total`` (in the configured base currency).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class NodeLabel(StrEnum):
    """Node labels of the entity graph."""

    USER = "User"
    DEVICE = "Device"
    DOCUMENT = "Document"
    MERCHANT = "Merchant"
    EMAIL = "Email"
    PHONE = "Phone"
    IP = "IP"
    ADDRESS = "Address"
    CARD = "Card"
    FINGERPRINT = "Fingerprint"


class RelType(StrEnum):
    """Relationship types of the entity graph."""

    USED_DEVICE = "USED_DEVICE"
    HAS_DOCUMENT = "HAS_DOCUMENT"
    HAS_EMAIL = "HAS_EMAIL"
    HAS_PHONE = "HAS_PHONE"
    USED_IP = "USED_IP"
    LIVES_AT = "LIVES_AT"
    USED_CARD = "USED_CARD"
    USED_FINGERPRINT = "USED_FINGERPRINT"
    PAID = "PAID"
    TRANSFERRED_TO = "TRANSFERRED_TO"


class EdgeType(NamedTuple):
    """A ``(source label, relationship, destination label)`` triple, as PyG names edge types."""

    src: NodeLabel
    rel: RelType
    dst: NodeLabel


EDGE_TYPES: dict[RelType, EdgeType] = {
    RelType.USED_DEVICE: EdgeType(NodeLabel.USER, RelType.USED_DEVICE, NodeLabel.DEVICE),
    RelType.HAS_DOCUMENT: EdgeType(NodeLabel.USER, RelType.HAS_DOCUMENT, NodeLabel.DOCUMENT),
    RelType.HAS_EMAIL: EdgeType(NodeLabel.USER, RelType.HAS_EMAIL, NodeLabel.EMAIL),
    RelType.HAS_PHONE: EdgeType(NodeLabel.USER, RelType.HAS_PHONE, NodeLabel.PHONE),
    RelType.USED_IP: EdgeType(NodeLabel.USER, RelType.USED_IP, NodeLabel.IP),
    RelType.LIVES_AT: EdgeType(NodeLabel.USER, RelType.LIVES_AT, NodeLabel.ADDRESS),
    RelType.USED_CARD: EdgeType(NodeLabel.USER, RelType.USED_CARD, NodeLabel.CARD),
    # A device's browser/app fingerprint as its own identifier: an app reset gives a fresh
    # device id and the same fingerprint, so device farms share fingerprints where they no
    # longer share device ids. Common fingerprints (one phone model's defaults) are hubs.
    RelType.USED_FINGERPRINT: EdgeType(NodeLabel.USER, RelType.USED_FINGERPRINT, NodeLabel.FINGERPRINT),
    RelType.PAID: EdgeType(NodeLabel.USER, RelType.PAID, NodeLabel.MERCHANT),
    RelType.TRANSFERRED_TO: EdgeType(NodeLabel.USER, RelType.TRANSFERRED_TO, NodeLabel.USER),
}

# Relationships whose totals include money moved.
PAYMENT_RELS: frozenset[RelType] = frozenset({RelType.PAID, RelType.TRANSFERRED_TO})

# Identifier labels whose ids are keyed hashes of sensitive values.
PSEUDONYMOUS_LABELS: frozenset[NodeLabel] = frozenset(
    {
        NodeLabel.DOCUMENT,
        NodeLabel.EMAIL,
        NodeLabel.PHONE,
        NodeLabel.IP,
        NodeLabel.ADDRESS,
        NodeLabel.CARD,
        NodeLabel.FINGERPRINT,
    }
)

# Properties each label may carry beyond the bookkeeping ones (id, first_seen, last_seen,
# event_count). The snapshot writes exactly these columns so its schema never drifts.
NODE_PROPERTIES: dict[NodeLabel, tuple[str, ...]] = {
    NodeLabel.USER: ("onboarded_at", "country"),
    NodeLabel.DEVICE: ("fingerprint",),
    NodeLabel.DOCUMENT: ("doc_type", "issuing_country", "masked"),
    NodeLabel.MERCHANT: ("category",),
    NodeLabel.EMAIL: ("domain", "masked"),
    NodeLabel.PHONE: ("country_code", "masked"),
    NodeLabel.IP: ("version", "masked"),
    NodeLabel.ADDRESS: ("country", "masked"),
    NodeLabel.CARD: ("masked",),
    NodeLabel.FINGERPRINT: (),
}
