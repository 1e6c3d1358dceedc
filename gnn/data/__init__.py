"""Dataset loaders; each returns a :class:`NodeDataset`."""

from gnn.data.amlsim import load_amlsim
from gnn.data.csv import load_labelled_csv
from gnn.data.dataset import NodeDataset, Split, carve_validation, stratified_splits
from gnn.data.sffsd import load_sffsd
from gnn.data.tolokers import load_tolokers

__all__ = [
    "NodeDataset",
    "Split",
    "carve_validation",
    "load_amlsim",
    "load_labelled_csv",
    "load_sffsd",
    "load_tolokers",
    "stratified_splits",
]
