"""Reports: build the JSON (the one source of facts), render Markdown from it, write atomically."""

SCHEMA_VERSION = 1
