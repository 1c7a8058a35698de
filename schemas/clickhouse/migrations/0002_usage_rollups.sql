-- Usage rollups per minute, hour and day by every attribution dimension.
-- SummingMergeTree merges rows eventually: always query with sum() ... GROUP BY.
CREATE TABLE IF NOT EXISTS {db}.usage_minute
(
    bucket DateTime,
    org String,
    team String,
    app String,
    env String,
    provider String,
    model String,
    user String,
    customer String,
    feature String,
    virtual_key_id String,
    requests UInt64,
    errors UInt64,
    blocked UInt64,
    estimated UInt64,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_5m_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_nano_usd Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, team, app, env, provider, model, user, customer, feature, virtual_key_id, org);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_minute_mv TO {db}.usage_minute AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    org, team, app, env, provider,
    served_model AS model,
    user, customer, feature, virtual_key_id,
    count() AS requests,
    countIf(status = 'upstream_error') AS errors,
    countIf(status = 'blocked') AS blocked,
    countIf(estimated = 1) AS estimated,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_nano_usd) AS cost_nano_usd
FROM {db}.usage_events
GROUP BY bucket, org, team, app, env, provider, model, user, customer, feature, virtual_key_id;

CREATE TABLE IF NOT EXISTS {db}.usage_hour
(
    bucket DateTime,
    org String,
    team String,
    app String,
    env String,
    provider String,
    model String,
    user String,
    customer String,
    feature String,
    virtual_key_id String,
    requests UInt64,
    errors UInt64,
    blocked UInt64,
    estimated UInt64,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_5m_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_nano_usd Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, team, app, env, provider, model, user, customer, feature, virtual_key_id, org);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_hour_mv TO {db}.usage_hour AS
SELECT
    toStartOfHour(occurred_at) AS bucket,
    org, team, app, env, provider,
    served_model AS model,
    user, customer, feature, virtual_key_id,
    count() AS requests,
    countIf(status = 'upstream_error') AS errors,
    countIf(status = 'blocked') AS blocked,
    countIf(estimated = 1) AS estimated,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_nano_usd) AS cost_nano_usd
FROM {db}.usage_events
GROUP BY bucket, org, team, app, env, provider, model, user, customer, feature, virtual_key_id;

CREATE TABLE IF NOT EXISTS {db}.usage_day
(
    bucket DateTime,
    org String,
    team String,
    app String,
    env String,
    provider String,
    model String,
    user String,
    customer String,
    feature String,
    virtual_key_id String,
    requests UInt64,
    errors UInt64,
    blocked UInt64,
    estimated UInt64,
    input_tokens UInt64,
    cached_input_tokens UInt64,
    cache_write_5m_tokens UInt64,
    cache_write_1h_tokens UInt64,
    output_tokens UInt64,
    reasoning_tokens UInt64,
    cost_nano_usd Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, team, app, env, provider, model, user, customer, feature, virtual_key_id, org);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_day_mv TO {db}.usage_day AS
SELECT
    toStartOfDay(occurred_at) AS bucket,
    org, team, app, env, provider,
    served_model AS model,
    user, customer, feature, virtual_key_id,
    count() AS requests,
    countIf(status = 'upstream_error') AS errors,
    countIf(status = 'blocked') AS blocked,
    countIf(estimated = 1) AS estimated,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_write_5m_tokens) AS cache_write_5m_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens,
    sum(output_tokens) AS output_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_nano_usd) AS cost_nano_usd
FROM {db}.usage_events
GROUP BY bucket, org, team, app, env, provider, model, user, customer, feature, virtual_key_id;
