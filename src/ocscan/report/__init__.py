"""Consolidated results of a cycle, and the formats and sinks that deliver them."""
