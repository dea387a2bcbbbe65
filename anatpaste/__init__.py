"""AnatPaste."""
