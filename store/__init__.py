"""What the StateStore keeps and the rules it keeps it by: the SQLite schema (`schema`) and the task
lifecycle, its states and the one table of legal moves (`lifecycle`). No actor lives here."""
