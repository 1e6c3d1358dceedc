"""Every feature family the risk models read, named once with its meaning in words.

Feature names come from :mod:`gnn.data.entity_graph` (a user's own columns),
:mod:`gnn.features` (neighbour aggregates, training-label and history-label features,
structural columns) and :mod:`gnn.online_features` (the same names for an applicant's star).
:func:`describe` maps a name to its :class:`Family` and a sentence for a value; explanations
(:mod:`gnn.explain`) use nothing else, so a reason never says more than the feature measures.

Only families with ``reads_labels`` look at anyone's fraud label (training labels of
neighbours, earlier labels of the same history key); neighbour *averages* such as
``rev_USED_IP_via_mean_account_age_h`` read features only, and their text says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

# Identifier relations: (singular, plural) in words.
IDENTIFIER_WORDS: dict[str, tuple[str, str]] = {
    "USED_DEVICE": ("device", "devices"),
    "USED_IP": ("IP address", "IP addresses"),
    "HAS_DOCUMENT": ("identity document", "identity documents"),
    "HAS_EMAIL": ("email address", "email addresses"),
    "HAS_PHONE": ("phone number", "phone numbers"),
    "LIVES_AT": ("postal address", "postal addresses"),
    "USED_CARD": ("card", "cards"),
    "USED_FINGERPRINT": ("device fingerprint", "device fingerprints"),
}
# Who a user reaches over each relation into it (gnn.features aggregates at the edge's target):
# an identifier relation reversed reaches the user's identifiers; TRANSFERRED_TO into a user
# comes from those who paid it; reversed, it reaches those it paid.
NEIGHBOURS: dict[str, str] = {
    **{f"rev_{rel}": f"its {plural}" for rel, (_, plural) in IDENTIFIER_WORDS.items()},
    "rev_PAID": "the merchants it paid",
    "TRANSFERRED_TO": "the users who sent it money",
    "rev_TRANSFERRED_TO": "the users it sent money to",
}
# Columns of identifier and merchant nodes (gnn.data.entity_graph: id_users, event_count, age / amount).
NODE_COLUMNS: dict[str, tuple[str, ...]] = {
    "Merchant": ("number of paying users", "number of events", "amount received"),
}
IDENTIFIER_COLUMNS = ("number of users", "number of events", "age in hours")
REDUCE_WORDS = {"mean": "average", "max": "highest", "min": "lowest", "std": "spread of the", "sum": "total"}
WINDOW_WORDS = {"1h": "hour", "24h": "24 hours", "7d": "7 days"}
LABEL_STATS = {
    "count": "users with a known training label",
    "fraud": "users labelled fraud in training",
    "rate": "smoothed share labelled fraud in training",
}


def _rel_words(rn: str) -> tuple[str, str]:
    """(singular, plural) of a relation named in lower case (``used_ip``)."""
    rel = rn.upper()
    if rel in IDENTIFIER_WORDS:
        return IDENTIFIER_WORDS[rel]
    if rel == "PAID":
        return ("merchant payment", "merchant payments")
    if rel == "TRANSFERRED_TO":
        return ("outgoing transfer", "outgoing transfers")
    return (rn.replace("_", " "), rn.replace("_", " ") + "s")


def _num(v: float, fmt: str = ".0f") -> str:
    return format(v, fmt) if math.isfinite(v) else "none"


@dataclass(frozen=True)
class Family:
    """One family of features: a name pattern, its noun phrase (for features that aggregate it
    over neighbours) and its sentence for a value.

    Attributes:
        name: The family's stable code (``shared_max``, ``via_mean``…).
        pattern: Full-match pattern of the feature names in the family.
        noun: The measured quantity as a noun phrase (from the match).
        sentence: The sentence for a value (from the match and the value).
        reads_labels: Whether the feature reads anyone's fraud label.
    """

    name: str
    pattern: re.Pattern[str]
    noun: Callable[[re.Match[str]], str]
    sentence: Callable[[re.Match[str], float], str]
    reads_labels: bool = False


def _f(
    name: str,
    pattern: str,
    noun: Callable[[re.Match[str]], str],
    sentence: Callable[[re.Match[str], float], str],
    reads_labels: bool = False,
) -> Family:
    return Family(name, re.compile(pattern), noun, sentence, reads_labels)


# A user's own columns (gnn.data.entity_graph, gnn.features.structural/spectral).
OWN: list[Family] = [
    _f("account_age", r"account_age_h", lambda m: "account age in hours",
       lambda m, v: f"the account is {_num(v)} hours old"),
    _f("onboarded", r"onboarded", lambda m: "share onboarded",
       lambda m, v: "went through onboarding" if v >= 0.5 else "never went through onboarding"),
    _f("events", r"events", lambda m: "number of events", lambda m, v: f"{_num(v)} events in total"),
    _f("first_payment", r"hours_to_first_payment", lambda m: "hours from onboarding to first payment",
       lambda m, v: f"first payment {_num(v, '.1f')} hours after onboarding" if math.isfinite(v)
       else "no payment yet"),
    _f("transfer_in_count", r"deg_transfer_in", lambda m: "number of users who sent it money",
       lambda m, v: f"received transfers from {_num(v)} users"),
    _f("transfer_in_amount", r"amount_transfer_in", lambda m: "amount received in transfers",
       lambda m, v: f"received {_num(v, ',.0f')} in transfers"),
    _f("degree", r"deg_(\w+)", lambda m: f"number of {_rel_words(m[1])[1]}",
       lambda m, v: f"{_num(v)} {_rel_words(m[1])[1]}"),
    _f("rel_events", r"events_(\w+)", lambda m: f"events over its {_rel_words(m[1])[1]}",
       lambda m, v: f"{_num(v)} events over its {_rel_words(m[1])[1]}"),
    _f("amount_max", r"amount_max_(\w+)", lambda m: f"largest of its {_rel_words(m[1])[1]}",
       lambda m, v: f"largest of its {_rel_words(m[1])[1]}: {_num(v, ',.0f')}"),
    _f("amount", r"amount_(\w+)", lambda m: f"amount moved in {_rel_words(m[1])[1]}",
       lambda m, v: f"moved {_num(v, ',.0f')} in {_rel_words(m[1])[1]}"),
    _f("shared_max", r"shared_max_(\w+)", lambda m: f"most other users on one of its {_rel_words(m[1])[1]}",
       lambda m, v: f"shares one {_rel_words(m[1])[0]} with {_num(v)} other users"),
    _f("shared_sum", r"shared_sum_(\w+)", lambda m: f"other users on its {_rel_words(m[1])[1]}",
       lambda m, v: f"{_num(v)} other users on its {_rel_words(m[1])[1]} in total"),
    _f("velocity", r"velocity_(1h|24h|7d)_(\w+)",
       lambda m: f"users linked to one of its {_rel_words(m[2])[1]} in the {WINDOW_WORDS[m[1]]} before it",
       lambda m, v: f"{_num(v)} users linked to the same {_rel_words(m[2])[0]} in the {WINDOW_WORDS[m[1]]} "
       "before it"),
    _f("log_degree", r"log_degree", lambda m: "log number of links",
       lambda m, v: f"log number of links {_num(v, '.2f')}"),
    _f("neighbour_degree", r"nb_log_degree_(mean|var)",
       lambda m: f"{'average' if m[1] == 'mean' else 'variance of'} neighbours' log number of links",
       lambda m, v: f"{'average' if m[1] == 'mean' else 'variance of'} neighbours' log number of links "
       f"{_num(v, '.2f')}"),
    _f("hop2_degree", r"hop2_log_degree_mean", lambda m: "average log number of links two hops away",
       lambda m, v: f"average log number of links two hops away {_num(v, '.2f')}"),
    _f("clustering", r"clustering", lambda m: "clustering coefficient",
       lambda m, v: f"clustering coefficient {_num(v, '.2f')}"),
    _f("spectral", r"spectral_(\d+)", lambda m: f"graph position (spectral component {m[1]})",
       lambda m, v: f"graph position (spectral component {m[1]}) {_num(v, '.3f')}"),
]  # fmt: skip

_REL = r"((?:rev_)?[A-Z_]+?)"
_RED = r"(mean|max|min|std|sum)"


def _neighbours(rel: str) -> str:
    return NEIGHBOURS.get(rel, f"its {rel.removeprefix('rev_').lower().replace('_', ' ')} neighbours")


def _node_column(label: str, i: str) -> str:
    names = NODE_COLUMNS.get(label, IDENTIFIER_COLUMNS)
    k = int(i)
    return names[k] if k < len(names) else f"column {k}"


def own_noun(feature: str) -> str:
    """The noun phrase of a user's own column (``account_age_h`` -> ``account age in hours``)."""
    for fam in OWN:
        m = fam.pattern.fullmatch(feature)
        if m:
            return fam.noun(m)
    return feature.replace("_", " ")


# Neighbour aggregates and label features (gnn.features), most specific first.
DEGREE_WORDS: dict[str, str] = {
    **{f"rev_{rel}": f"uses {{v}} {plural}" for rel, (_, plural) in IDENTIFIER_WORDS.items()},
    "rev_PAID": "paid {v} merchants",
    "TRANSFERRED_TO": "received money from {v} users",
    "rev_TRANSFERRED_TO": "sent money to {v} users",
}
HISTORY_STATS = {
    **LABEL_STATS,
    "last_label": "last training label",
    "since_fraud": "rows since the last training fraud",
}


def _degree(m: re.Match[str], v: float) -> str:
    template = DEGREE_WORDS.get(
        m[1], "{v} links of type " + m[1].removeprefix("rev_").lower().replace("_", " ")
    )
    return template.format(v=_num(v))


def _label_value(stat: str, v: float) -> str:
    return f"{v:.0%}" if stat == "rate" and math.isfinite(v) else _num(v, ".3g")


DERIVED: list[Family] = [
    _f("neighbour_count", rf"{_REL}_deg", lambda m: f"number of {_neighbours(m[1]).removeprefix('its ').removeprefix('the ')}",
       _degree),
    _f("node_aggregate", rf"{_REL}_{_RED}_([A-Z][A-Za-z]*)\.(\d+)",
       lambda m: f"{REDUCE_WORDS[m[2]]} {_node_column(m[3], m[4])} of {_neighbours(m[1])}",
       lambda m, v: f"{REDUCE_WORDS[m[2]]} {_node_column(m[3], m[4])} of {_neighbours(m[1])}: {_num(v, ',.3g')}"),
    _f("via_count", rf"{_REL}_via_count", lambda m: f"user links on {_neighbours(m[1])}",
       lambda m, v: f"{_num(v)} user links on {_neighbours(m[1])}, its own included"),
    _f("via_labels", rf"{_REL}_via_train_(count|fraud|rate)",
       lambda m: f"{LABEL_STATS[m[2]]} among the other users of {_neighbours(m[1])}",
       lambda m, v: f"{LABEL_STATS[m[2]]} among the other users of {_neighbours(m[1])}: {_label_value(m[2], v)}",
       reads_labels=True),
    _f("hop_labels", rf"{_REL}_(h1|h2)_train_(count|fraud|rate)",
       lambda m: f"{LABEL_STATS[m[3]]} among {_neighbours(m[1])}{' and theirs' if m[2] == 'h2' else ''}",
       lambda m, v: f"{LABEL_STATS[m[3]]} among {_neighbours(m[1])}{' and theirs' if m[2] == 'h2' else ''}: "
       f"{_label_value(m[3], v)}", reads_labels=True),
    # Neighbour averages of features: they read no label, so they never speak of fraud.
    _f("via_mean", rf"{_REL}_via_mean_(\w+)",
       lambda m: f"{own_noun(m[2])}, averaged over the other users of {_neighbours(m[1])}",
       lambda m, v: f"the other users of {_neighbours(m[1])} have an average {own_noun(m[2])} of {_num(v, ',.3g')}"),
    _f("hop2_mean", rf"{_REL}_hop2_mean_(\w+)",
       lambda m: f"{own_noun(m[2])}, averaged two steps through {_neighbours(m[1])}",
       lambda m, v: f"users two steps through {_neighbours(m[1])} have an average {own_noun(m[2])} of "
       f"{_num(v, ',.3g')}"),
    _f("neighbour_aggregate", rf"{_REL}_{_RED}_(\w+)",
       lambda m: f"{REDUCE_WORDS[m[2]]} {own_noun(m[3])} among {_neighbours(m[1])}",
       lambda m, v: f"{REDUCE_WORDS[m[2]]} {own_noun(m[3])} among {_neighbours(m[1])}: {_num(v, ',.3g')}"),
    _f("history_labels", r"(\w+?)_hist_train_(count|fraud|rate|last_label|since_fraud)(?:_w(\d+))?",
       lambda m: f"{HISTORY_STATS[m[2]]} of earlier users of the same {m[1].replace('_', ' ')}",
       lambda m, v: f"{HISTORY_STATS[m[2]]} of earlier users of the same {m[1].replace('_', ' ')}"
       f"{f' (last {m[3]})' if m[3] else ''}: {_label_value(m[2], v)}", reads_labels=True),
]  # fmt: skip

FAMILIES: list[Family] = [*OWN, *DERIVED]


@dataclass(frozen=True)
class Description:
    """A feature's family, what it measures, and whether it reads labels."""

    feature: str
    family: str
    noun: str
    reads_labels: bool
    sentence: Callable[[float], str]


def describe(feature: str) -> Description | None:
    """The family of ``feature`` and its words, or ``None`` for a name no family knows."""
    for fam in FAMILIES:
        m = fam.pattern.fullmatch(feature)
        if m:
            return Description(
                feature, fam.name, fam.noun(m), fam.reads_labels, lambda v, m=m, fam=fam: fam.sentence(m, v)
            )
    return None


def reason_text(feature: str, value: float) -> str:
    """A sentence for one feature's value (its name and value when no family knows it)."""
    d = describe(feature)
    if d is None:
        return f"{feature} = {value:.3g}"
    return d.sentence(float(value))
