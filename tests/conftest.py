"""Shared test configuration. Prerequisite checks live in ``prerequisites.py``."""
