#!/usr/bin/env bash
# Creates LiveSync's topics with Kafka's own tools: the equivalent of
# `livesync create-topics --replication 3`, plus min.insync.replicas=2 on every topic.
# Topics and partition counts: Sources/Worker/Topics.swift. Safe to run again: existing
# topics are left as they are (their min.insync.replicas is set), and the partition counts
# are checked at the end.
#
#   BOOTSTRAP=kafka-1:9092,kafka-2:9092,kafka-3:9092 \
#   COMMAND_CONFIG=/etc/livesync/kafka-admin.properties \
#   KAFKA_BIN=/opt/kafka/bin ./topics.sh
#
# COMMAND_CONFIG is a Java client properties file for TLS/SASL clusters, e.g.
#   security.protocol=SASL_SSL
#   sasl.mechanism=SCRAM-SHA-512
#   sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="…";
#   ssl.truststore.location=/etc/kafka/truststore.jks
set -euo pipefail

BOOTSTRAP="${BOOTSTRAP:-kafka-1:9092,kafka-2:9092,kafka-3:9092}"
KAFKA_BIN="${KAFKA_BIN:-/opt/kafka/bin}"
COMMAND_CONFIG="${COMMAND_CONFIG:-}"
REPLICATION=3
MIN_INSYNC_REPLICAS=2
# Co-partitioned topics (same key space) must have the same count: do not change one alone.
KEYED_PARTITIONS=16
DEADLETTER_PARTITIONS=4

# name partitions
TOPICS=(
  "orders.lines $KEYED_PARTITIONS"           # key SKU; ingest -> stock
  "stock.adjustments $KEYED_PARTITIONS"      # key SKU; operators, dispatch, after-sales -> stock
  "orders.placed $KEYED_PARTITIONS"          # key order id; ingest -> dispatch (alerting reads its unread head)
  "stock.reservations $KEYED_PARTITIONS"     # key order id; stock -> dispatch, channels
  "fulfillment.shipments $KEYED_PARTITIONS"  # key order id; dispatch -> warehouse/ERP
  "fulfillment.shipped $KEYED_PARTITIONS"    # key order id; ingest (warehouse/ERP) -> channels, dispatch
  "aftersales.requests $KEYED_PARTITIONS"    # key order id; ingest -> after-sales
  "orders.outcomes $KEYED_PARTITIONS"        # key order id; dispatch, after-sales -> (the merchant's own tools)
  "deadletter $DEADLETTER_PARTITIONS"        # key of the failed message; every consumer -> alerting
  "stock.changelog $KEYED_PARTITIONS"        # key source partition; stock -> stock (restore)
)
# A changelog is a log of batch deltas replayed in order: keep all of it (no compaction, no expiry).
CHANGELOG_CONFIG="cleanup.policy=delete,retention.ms=-1,retention.bytes=-1"

common=(--bootstrap-server "$BOOTSTRAP")
if [[ -n "$COMMAND_CONFIG" ]]; then common+=(--command-config "$COMMAND_CONFIG"); fi

for entry in "${TOPICS[@]}"; do
  read -r topic partitions <<<"$entry"
  "$KAFKA_BIN/kafka-topics.sh" "${common[@]}" --create --if-not-exists \
    --topic "$topic" --partitions "$partitions" --replication-factor "$REPLICATION" \
    --config "min.insync.replicas=$MIN_INSYNC_REPLICAS"
  if [[ "$topic" == *.changelog ]]; then
    "$KAFKA_BIN/kafka-configs.sh" "${common[@]}" --alter --entity-type topics --entity-name "$topic" \
      --add-config "$CHANGELOG_CONFIG"
  fi
  # Also applies the setting to a topic that already existed (e.g. made by `livesync create-topics`).
  "$KAFKA_BIN/kafka-configs.sh" "${common[@]}" --alter --entity-type topics --entity-name "$topic" \
    --add-config "min.insync.replicas=$MIN_INSYNC_REPLICAS"
done

status=0
for entry in "${TOPICS[@]}"; do
  read -r topic partitions <<<"$entry"
  have=$("$KAFKA_BIN/kafka-topics.sh" "${common[@]}" --describe --topic "$topic" \
    | sed -n 's/.*PartitionCount:[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1) || true
  echo "$topic: ${have:-missing} partitions (want $partitions)"
  if [[ "$have" != "$partitions" ]]; then status=1; fi
done
if [[ $status -ne 0 ]]; then
  echo "partition counts differ: SKU- and order-keyed topics must be co-partitioned; fix them before starting consumers" >&2
fi
exit $status
