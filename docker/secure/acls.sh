#!/bin/sh
# The roles' ACLs for the compose deployment (empty topic prefix, app id `trackbone`), as
# streams/broker_security.role_acls grants them on the local secure broker. Runs once the
# broker answers; adding an existing ACL is a no-op.
set -eu
ACLS="/opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config /secrets/admin.properties --add --force"
T=tracking
INPUTS="--topic $T.registrations --topic $T.scans --topic $T.handoffs --topic $T.customs --topic $T.corrections"
$ACLS --allow-principal User:carrier --operation Write --operation Describe $INPUTS
$ACLS --allow-principal User:worker --operation Read --operation Describe $INPUTS
$ACLS --allow-principal User:worker --operation Write --operation Describe \
  --topic $T.parcel-status --topic $T.milestones --topic $T.alerts --topic $T.dead-letter --topic $T.parcel-events
$ACLS --allow-principal User:worker --operation Read --operation Write --operation Describe --operation Create \
  --topic $T.lane-observations
$ACLS --allow-principal User:worker --operation Read --operation Write --operation Describe --operation Create \
  --operation DescribeConfigs --resource-pattern-type prefixed --topic trackbone-
$ACLS --allow-principal User:worker --operation Read --operation Describe --group trackbone
$ACLS --allow-principal User:sink --operation Read --operation Describe --topic $T.parcel-status --topic $T.parcel-events
$ACLS --allow-principal User:sink --operation Read --operation Describe --group trackbone-clickhouse-sink
$ACLS --allow-principal User:downstream --operation Read --operation Describe \
  --topic $T.parcel-status --topic $T.milestones --topic $T.alerts
$ACLS --allow-principal User:downstream --operation Read --operation Describe \
  --resource-pattern-type prefixed --group downstream-
