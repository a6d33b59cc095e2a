"""The outside world: source readers, object storage, git, APIs, LLM engines."""
