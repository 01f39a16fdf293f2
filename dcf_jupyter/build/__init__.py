"""Building functions: checks for the local backend (images come with the docker backend)."""

from ..definition.check import CheckReport, check_function

__all__ = ["CheckReport", "check_function"]
