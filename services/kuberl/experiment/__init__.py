"""The experiment role: the user-facing API that drives the other roles."""
