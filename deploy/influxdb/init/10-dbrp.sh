#!/bin/sh
# Runs once, when the influxdb container initialises a new data volume
# (DOCKER_INFLUXDB_INIT_MODE=setup). Maps the InfluxQL database/retention
# policy "fsg/autogen" to the bucket, so the InfluxQL dashboards (and
# InfluxDB 1.x clients) read the bucket through the v1 compatibility API.
set -eu
db="${FSG_INFLUXQL_DB:-fsg}"
bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:-}"
if [ -z "$bucket_id" ]; then
    bucket_id=$(influx bucket list --name "$DOCKER_INFLUXDB_INIT_BUCKET" \
        --org "$DOCKER_INFLUXDB_INIT_ORG" --token "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" \
        --hide-headers | cut -f1)
fi
influx v1 dbrp create \
    --org "$DOCKER_INFLUXDB_INIT_ORG" \
    --token "$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN" \
    --bucket-id "$bucket_id" \
    --db "$db" \
    --rp autogen \
    --default
echo "dbrp: InfluxQL database $db/autogen -> bucket $DOCKER_INFLUXDB_INIT_BUCKET ($bucket_id)"
