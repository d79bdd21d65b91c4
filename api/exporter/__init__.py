"""`oasis-autoscaler exporter`: a running OasisPlatform's queue status as our metrics.

The platform has its own API and database; this service only reads it (the websocket's pushes,
a slow REST resync, the models and their scaling configurations) and publishes, on /metrics,
the families the scaler reads (docs/metrics.md), so that the scaler, the alerts and the
dashboards work on it unchanged. No Flask: it is a publisher, not an API.

- `snapshot`: the pure core, one queue-status message -> per-queue work counts.
- `state`: the last good snapshot and the models, shared by the loops and the collector.
- `collector`: the metric families, computed from the state when scraped.
- `platform`: the REST client (login, token renewal, path prefix).
- `stream`: the websocket client with back-off.
- `service`: the loops and the HTTP server (/metrics, /healthz).

The command line is cli/commands/exporter.py.
"""
