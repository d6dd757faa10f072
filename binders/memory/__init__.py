"""The in-memory binder: a faithful broker model for tests and the zero-setup demo."""
