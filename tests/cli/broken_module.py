"""A module that raises while it is imported, as a user's module with a bug does."""

raise RuntimeError("boom at import")
