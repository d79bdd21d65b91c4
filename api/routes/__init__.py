"""One blueprint per resource of the OasisPlatform v2 API."""
