"""Leakage detection: benchmark n-grams in the corpus (decontaminate) and model-based audits."""
