"""Evaluation: scoring runs, statistics, reports and plots."""
