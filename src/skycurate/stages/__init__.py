"""Curation logic: pure Arrow batch functions plus the Spark jobs that apply them (no Prefect here)."""
