"""Helpers of the data-backend tests (a uniquely named module: test folders share one import namespace)."""

from __future__ import annotations

#: Credentials the test server accepts (it checks none unless authentication is switched on).
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLESIMPLETUNER", "example-secret-key"
