#!/usr/bin/env bash
# Creates LiveSync's topics with Kafka's own tools, with production settings: replication
# factor 3 and min.insync.replicas=2 on every topic (with acks=all, a write then survives the
# loss of any one broker and is refused rather than kept on a single copy), the changelogs
# `stock.changelog` and `dispatch.changelog` kept whole (cleanup.policy=delete, retention.ms=-1,
# retention.bytes=-1), and `livesync.instances` compacted (cleanup.policy=compact: only each
# process's latest announcement matters).
# The equivalent of `livesync create-topics --replication 3`, plus min.insync.replicas.
# Topics and partition counts: Sources/Model/Topics.swift (scripts/validate-deploy.sh checks
# that this list matches it).
#
# Safe to run again: existing topics are left as they are except that their
# min.insync.replicas (and the changelogs' retention, the instances topic's compaction) is set;
# at the end every topic's partition count, replication factor and settings are checked, and
# the script exits 1 if one differs.
#
#   BOOTSTRAP=kafka-1:9092,kafka-2:9092,kafka-3:9092 \
#   COMMAND_CONFIG=/etc/livesync/kafka-admin.properties \
#   KAFKA_BIN=/opt/kafka/bin ./topics.sh
#
# COMMAND_CONFIG is a Java client properties file for TLS/SASL clusters, e.g.
#   security.protocol=SASL_SSL
#   sasl.mechanism=SCRAM-SHA-512
#   sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="…";
#   ssl.truststore.type=PEM
#   ssl.truststore.location=/etc/livesync/kafka-ca.pem
#
# Why the changelogs are never compacted: each `stock.changelog` record is one batch's delta
# for one source partition (levels changed, lines decided, offsets reached), each
# `dispatch.changelog` record one batch's inputs for one source partition (replayed to rebuild
# the order book), linked to the previous record. A stock or dispatch instance that gains a
# partition replays the whole chain in order, and the read model (livesync-book) builds its
# copy from both whole changelogs. Compaction keeps only the newest record per key (the key is
# the partition number), which would drop every earlier entry and break the chain; time or
# size retention would drop its start. So: cleanup.policy=delete with no time and no size limit.
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
  "stock.adjustments $KEYED_PARTITIONS"      # key SKU; operators, dispatch (releases) -> stock
  "orders.placed $KEYED_PARTITIONS"          # key order id; ingest -> dispatch (alerting reads its unread head)
  "stock.reservations $KEYED_PARTITIONS"     # key order id; stock -> dispatch, channels
  "fulfillment.shipments $KEYED_PARTITIONS"  # key order id; dispatch -> warehouse/ERP
  "fulfillment.shipped $KEYED_PARTITIONS"    # key order id; ingest (warehouse/ERP) -> channels, dispatch
  "aftersales.requests $KEYED_PARTITIONS"    # key order id; ingest -> dispatch (refunds, applied by the order's one writer)
  "orders.outcomes $KEYED_PARTITIONS"        # key order id; dispatch -> (the merchant's own tools)
  "deadletter $DEADLETTER_PARTITIONS"        # key of the failed message; every consumer -> alerting
  "stock.changelog $KEYED_PARTITIONS"        # key source partition; stock -> stock (restore), book
  "dispatch.changelog $KEYED_PARTITIONS"     # key source partition; dispatch -> dispatch (restore), book
  "livesync.instances 1"                      # key process name; every process -> status, dashboard, alerting
)
# A changelog is a log of batch entries replayed in order: keep all of it (no compaction, no expiry).
# Same values as Topics.changelogConfig.
CHANGELOG_CONFIG=(cleanup.policy=delete retention.ms=-1 retention.bytes=-1)
# Each process's announcements (telemetry URL, key = process name): only the latest per key is
# read, so compaction keeps the topic small. Same values as Topics.instancesConfig.
INSTANCES_CONFIG=(cleanup.policy=compact)

common=(--bootstrap-server "$BOOTSTRAP")
if [[ -n "$COMMAND_CONFIG" ]]; then common+=(--command-config "$COMMAND_CONFIG"); fi

is_changelog() { [[ "$1" == *.changelog ]]; }
is_instances() { [[ "$1" == livesync.instances ]]; }

# The topic's describe line: "Topic: T  TopicId: …  PartitionCount: N  ReplicationFactor: R  Configs: k=v,…"
describe() {
  "$KAFKA_BIN/kafka-topics.sh" "${common[@]}" --describe --topic "$1" 2>/dev/null \
    | grep -m 1 "PartitionCount" || true
}
field() { sed -n "s/.*$1:[[:space:]]*\([^[:space:]]*\).*/\1/p" <<<"$2"; }
configs_of() { sed -n 's/.*Configs:[[:space:]]*\(.*\)$/\1/p' <<<"$1" | tr -d '[:space:]'; }
has_config() { [[ ",$1," == *",$2,"* ]]; }

status=0
for entry in "${TOPICS[@]}"; do
  read -r topic partitions <<<"$entry"
  create=(--create --if-not-exists --topic "$topic" --partitions "$partitions"
          --replication-factor "$REPLICATION" --config "min.insync.replicas=$MIN_INSYNC_REPLICAS")
  if is_changelog "$topic"; then
    existing=$(configs_of "$(describe "$topic")")
    if [[ ",$existing," == *"compact"* ]]; then
      echo "ERROR: $topic has cleanup.policy with compact ($existing): compaction drops changelog deltas." >&2
      echo "       It is switched to delete now, but entries may already be gone: a restore of such a partition (stock, dispatch, the read model) stops with an error." >&2
      status=1
    fi
    for c in "${CHANGELOG_CONFIG[@]}"; do create+=(--config "$c"); done
  fi
  if is_instances "$topic"; then
    for c in "${INSTANCES_CONFIG[@]}"; do create+=(--config "$c"); done
  fi
  "$KAFKA_BIN/kafka-topics.sh" "${common[@]}" "${create[@]}"
  # Also applies the settings to a topic that already existed (e.g. made by `livesync create-topics`).
  add="min.insync.replicas=$MIN_INSYNC_REPLICAS"
  if is_changelog "$topic"; then add+=",$(IFS=,; echo "${CHANGELOG_CONFIG[*]}")"; fi
  if is_instances "$topic"; then add+=",$(IFS=,; echo "${INSTANCES_CONFIG[*]}")"; fi
  "$KAFKA_BIN/kafka-configs.sh" "${common[@]}" --alter --entity-type topics --entity-name "$topic" \
    --add-config "$add"
done

for entry in "${TOPICS[@]}"; do
  read -r topic partitions <<<"$entry"
  line=$(describe "$topic")
  have=$(field PartitionCount "$line")
  rf=$(field ReplicationFactor "$line")
  configs=$(configs_of "$line")
  problems=()
  [[ "$have" == "$partitions" ]] || problems+=("partitions ${have:-missing}, want $partitions")
  [[ "$rf" == "$REPLICATION" ]] || problems+=("replication factor ${rf:-missing}, want $REPLICATION")
  has_config "$configs" "min.insync.replicas=$MIN_INSYNC_REPLICAS" || problems+=("min.insync.replicas not $MIN_INSYNC_REPLICAS")
  if is_changelog "$topic"; then
    for c in "${CHANGELOG_CONFIG[@]}"; do has_config "$configs" "$c" || problems+=("$c not set"); done
  fi
  if is_instances "$topic"; then
    for c in "${INSTANCES_CONFIG[@]}"; do has_config "$configs" "$c" || problems+=("$c not set"); done
  fi
  if [[ ${#problems[@]} -eq 0 ]]; then
    echo "$topic: $have partitions, replication $rf, ok"
  else
    echo "$topic: $(IFS=';'; echo "${problems[*]}")" >&2
    status=1
  fi
done
if [[ $status -ne 0 ]]; then
  echo "topics differ from LiveSync's: partition counts must match (SKU- and order-keyed topics are co-partitioned)," >&2
  echo "and a replication factor cannot be changed here (use kafka-reassign-partitions.sh); fix them before starting consumers" >&2
fi
exit $status
