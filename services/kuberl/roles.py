"""The six roles, the port each serves on by default (the seed's ports) and its gRPC service."""

from __future__ import annotations

ROLES = ("experiment", "environment", "buffer", "learner", "policy", "analytics")
DEFAULT_PORTS = {"environment": 50050, "buffer": 50051, "analytics": 50052, "experiment": 50053,
                 "learner": 50054, "policy": 50056}
SERVICES = {"environment": "EnvironmentService", "buffer": "BufferService", "analytics": "AnalyticsService",
            "experiment": "ExperimentService", "learner": "LearnerService", "policy": "PolicyService"}
ROLE_OF_SERVICE = {service: role for role, service in SERVICES.items()}
# The policy role keeps a released experiment's result, and analytics its metrics, this long
# unless told otherwise.
DEFAULT_RESULT_RETENTION_SECONDS = 7 * 24 * 3600


def checked_retention(seconds: float) -> float:
    """A result retention in seconds as given; ValueError below 0."""
    if seconds < 0:
        raise ValueError(f"result retention: must be >= 0 seconds, got {seconds}")
    return seconds
