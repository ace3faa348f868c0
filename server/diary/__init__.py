"""The diary: appointments, recurring series, one-time video links and client messages.

Modules: ``recurrence`` (pure dates), ``links`` (tokens and link states), ``templates``
(placeholders and rendering), ``appointments`` / ``outbox`` (SQL), ``booking`` (the
all-or-nothing changes), ``delivery`` + ``worker`` (sending), ``*_api`` (HTTP).
"""
