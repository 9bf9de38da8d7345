"""Operating the running service: HTTP (metrics, health, camera API, status page, snapshots)
and run-time camera changes (REST, SIGHUP)."""
