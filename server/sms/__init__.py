"""SMS providers behind the outbox's ``SmsSender`` interface, and their delivery reports."""
