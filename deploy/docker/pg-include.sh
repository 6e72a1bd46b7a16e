#!/bin/sh
# Runs once, when the postgres image initialises its data directory: use the 4 GB profile's settings.
echo "include '/etc/postgresql/dukasync-4gb.conf'" >>"$PGDATA/postgresql.conf"
