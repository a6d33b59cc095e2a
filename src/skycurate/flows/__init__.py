"""Prefect flows, one module per flow. Importing this package applies the offline defaults.

Without ``PREFECT_API_URL`` flows run against an ephemeral local API (nothing leaves the
machine); with it set they report to that server. Telemetry is off unless the user turned it on.
"""

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY", "false")
