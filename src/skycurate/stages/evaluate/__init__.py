"""Benchmark evaluation: benchmark rows -> items, models' answers, verdicts and accuracy tables."""
