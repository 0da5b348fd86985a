"""Data layer: structures -> neighbour graphs -> batched tensors; labelled datasets.

Modules (one idea each):

* :mod:`~gaunt_md.data.convert`: user objects (Atoms, pymatgen, paths) <-> ``ase.Atoms``;
* :mod:`~gaunt_md.data.neighbors`: periodic neighbour lists (C++ cell list or matscipy) in the project's edge
  convention (``edge_index[0]`` = sender j, ``edge_index[1]`` = receiver i);
* :mod:`~gaunt_md.data.image_search`: neighbour searches in C++: a cell list for one periodic
  structure, and many small structures in one call (used by :func:`atoms_to_graphs`);
* :mod:`~gaunt_md.data.graph`: :class:`AtomicGraph`, one structure as numpy arrays;
  :func:`atoms_to_graph` / :func:`atoms_to_graphs` (one / many structures);
* :mod:`~gaunt_md.data.verlet`: :class:`VerletGraphs`, one evolving structure's neighbour list kept
  between calls (searched with ``cutoff + skin``, filtered while atoms move less than ``skin / 2``);
* :mod:`~gaunt_md.data.batch`: :class:`Batch` of torch tensors, collation and batching;
* :mod:`~gaunt_md.data.datasets`: labelled extxyz frames and isolated-atom energies.
"""

from gaunt_md.data.batch import Batch, chunk, collate, split_per_atom, split_per_graph
from gaunt_md.data.convert import to_atoms, to_structure
from gaunt_md.data.datasets import (
    ISOLATED_CONFIG_TYPES,
    LabelledStructure,
    is_isolated_atom,
    isolated_atom_energies,
    read_labelled,
    split_isolated,
)
from gaunt_md.data.graph import AtomicGraph, atoms_to_graph, atoms_to_graphs
from gaunt_md.data.neighbors import edge_vectors, neighbor_list
from gaunt_md.data.verlet import VerletGraphs

__all__ = [
    "AtomicGraph",
    "Batch",
    "ISOLATED_CONFIG_TYPES",
    "LabelledStructure",
    "VerletGraphs",
    "atoms_to_graph",
    "atoms_to_graphs",
    "chunk",
    "collate",
    "edge_vectors",
    "is_isolated_atom",
    "isolated_atom_energies",
    "neighbor_list",
    "read_labelled",
    "split_isolated",
    "split_per_atom",
    "split_per_graph",
    "to_atoms",
    "to_structure",
]
