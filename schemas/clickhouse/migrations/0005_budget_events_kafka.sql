-- budget_events gets the killswitch's budget-events.v1 through the sink,
-- which needs every table to carry the Kafka partition and offset of each
-- row (its exactly-once progress), plus the fields the event grew before
-- its first writer: severity, the policy name and the period end. (No IF
-- NOT EXISTS: ClickHouse 18.16 has none for columns; the ledger runs a
-- migration once.)
ALTER TABLE {db}.budget_events
    ADD COLUMN severity String,
    ADD COLUMN budget String,
    ADD COLUMN period_end DateTime,
    ADD COLUMN kafka_partition Int32,
    ADD COLUMN kafka_offset Int64;
