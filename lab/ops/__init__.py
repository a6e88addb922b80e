"""Operating the deployed system: the connectivity probe, the watcher's event log, backups."""
