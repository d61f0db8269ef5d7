"""The TUI's widgets, one per file; each renders data the app hands it and fetches nothing."""
