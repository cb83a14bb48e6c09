"""Benchmarks: each compares variants side by side in one process and prints ratios."""
