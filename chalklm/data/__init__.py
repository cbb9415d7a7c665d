"""Datasets by name: where to find them, how to fetch them, how to read them as text."""

from chalklm.data.registry import (
    DATASETS,
    Dataset,
    dataset_file,
    load_default_text,
    load_text,
    read_text_file,
)

__all__ = [
    "DATASETS",
    "Dataset",
    "dataset_file",
    "load_default_text",
    "load_text",
    "read_text_file",
]
