"""The chunk splitter and model workers: chunking semantics and the Celery tasks."""
