"""Staff authentication: argon2id passwords, JWT sessions, CSRF, login throttling."""
