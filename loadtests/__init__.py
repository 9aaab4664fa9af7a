"""Locust load tests of carbon-points (see README.md)."""
