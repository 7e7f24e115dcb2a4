"""The files of a running sandbox in its ``--dir`` (light: the CLI imports it at start-up)."""

STATE_FILE = "sandbox.json"  # written once everything answers; holds what clients need
PID_FILE = "sandbox.pid"  # the background process, checked by identity before a signal
LOG_FILE = "sandbox.log"  # that process's output
