-- Raw events, one row per Kafka record. kafka_topic/partition/offset let the
-- sink resume exactly where ClickHouse says it stopped.
CREATE TABLE IF NOT EXISTS {db}.usage_events
(
    id UUID,
    occurred_at DateTime,
    occurred_at_nanos UInt32,
    received_at DateTime,
    org String,
    team String,
    app String,
    env String,
    user String,
    customer String,
    feature String,
    virtual_key_id String,
    agent_run_id String,
    agent_step UInt32,
    tag_keys Array(String),
    tag_values Array(String),
    provider String,
    requested_model String,
    served_model String,
    route String,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_5m_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_nano_usd Int64,
    price_version String,
    estimated UInt8,
    unpriced UInt8,
    latency_ms UInt32,
    ttft_ms UInt32,
    status String,
    stream UInt8,
    prompt_fingerprint String,
    error String,
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (team, app, occurred_at, id);

CREATE TABLE IF NOT EXISTS {db}.gpu_samples
(
    id UUID,
    occurred_at DateTime,
    occurred_at_nanos UInt32,
    node String,
    gpu_uuid String,
    gpu_index UInt16,
    gpu_model String,
    mig_profile String,
    mig_instance String,
    team String,
    app String,
    namespace String,
    pod String,
    container String,
    interval_ms UInt32,
    gpu_util Float64,
    gr_engine_active Float64,
    sm_active Float64,
    tensor_active Float64,
    dram_active Float64,
    fb_used_bytes UInt64,
    fb_free_bytes UInt64,
    power_watts Float64,
    energy_joules Float64,
    cost_nano_usd Int64,
    idle_cost_nano_usd Int64,
    price_version String,
    source String,
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (node, gpu_uuid, occurred_at);

CREATE TABLE IF NOT EXISTS {db}.anomalies
(
    id UUID,
    detected_at DateTime,
    subject String,
    metric String,
    observed Float64,
    baseline Float64,
    score Float64,
    window_start DateTime,
    window_end DateTime,
    detector String,
    severity String,
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(detected_at)
ORDER BY (subject, metric, detected_at);

CREATE TABLE IF NOT EXISTS {db}.verdicts
(
    id UUID,
    issued_at DateTime,
    expires_at DateTime,
    subject String,
    action String,
    reason String,
    limit_nano_usd Int64,
    spent_nano_usd Int64,
    downgrade_to String,
    throttle_per_min UInt32,
    lease_remaining_nano_usd Int64,
    lease_instances UInt32,
    issued_by String,
    kafka_partition Int32,
    kafka_offset Int64
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(issued_at)
ORDER BY (subject, issued_at);

CREATE TABLE IF NOT EXISTS {db}.budget_events
(
    id UUID,
    occurred_at DateTime,
    subject String,
    period String,
    period_start DateTime,
    kind String,
    threshold_pct UInt8,
    limit_nano_usd Int64,
    spent_nano_usd Int64,
    forecast_nano_usd Int64,
    reason String,
    actor String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (subject, occurred_at);

-- Prices for SQL joins: nano-USD per unit, where unit is '1M_tokens',
-- 'gpu_hour' or 'request'. A long-context tier applies from
-- min_context_tokens upwards.
CREATE TABLE IF NOT EXISTS {db}.prices
(
    version String,
    effective_from Date,
    provider String,
    model String,
    category String,
    unit String,
    nano_usd_per_unit Int64,
    min_context_tokens UInt64,
    loaded_at DateTime
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (version, provider, model, category, min_context_tokens);
