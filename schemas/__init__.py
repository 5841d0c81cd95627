"""Python helpers next to the schemas: the .avsc files are the source of truth."""
