"""Known-answer vectors that pin the storage format of docs/design.md (see README.md here)."""
