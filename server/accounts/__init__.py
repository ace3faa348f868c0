"""Accounts by email: a site admin invites a user, anyone may ask for a password reset.

Both are one-time links (``tokens``): only a SHA-256 hash of the token is stored, a link is
used at most once, expires, and a newer link of the same purpose retires the older ones.
Setting a password through either ends every session the user holds.
"""
