"""Accounts and authentication for the app API: users, organisations, tokens.

Other domains use `service.accounts.dependencies.CurrentUser`.
"""
