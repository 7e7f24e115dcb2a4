"""The long-running agent: schedule, leader election, metrics, health, graceful shutdown."""
