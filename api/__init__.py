"""The REST API: the OasisPlatform v2 front door for models, portfolios and analyses."""
