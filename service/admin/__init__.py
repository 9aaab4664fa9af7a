"""Administrators: accounts apart from citizens, roles, TOTP login, the admin API."""
