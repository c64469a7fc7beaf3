"""Evaluation: datasets, runs, the embedding cache, metrics and reports."""
