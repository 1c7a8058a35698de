-- GPU rollup per minute (the hour and day ones are in 0003), for dashboards
-- and idle alerts that need finer steps than an hour. Same columns and
-- meaning as gpu_hour.
CREATE TABLE IF NOT EXISTS {db}.gpu_minute
(
    bucket DateTime,
    team String,
    app String,
    namespace String,
    node String,
    gpu_model String,
    samples UInt64,
    gpu_ms UInt64,
    util_ms Float64,
    idle_ms Float64,
    cost_nano_usd Int64,
    idle_cost_nano_usd Int64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, team, app, namespace, node, gpu_model);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.gpu_minute_mv TO {db}.gpu_minute AS
SELECT
    toStartOfMinute(occurred_at) AS bucket,
    team, app, namespace, node, gpu_model,
    count() AS samples,
    sum(toUInt64(interval_ms)) AS gpu_ms,
    sum(gpu_util * interval_ms) AS util_ms,
    sum((1 - if(gr_engine_active > 0, gr_engine_active, gpu_util)) * interval_ms) AS idle_ms,
    sum(cost_nano_usd) AS cost_nano_usd,
    sum(idle_cost_nano_usd) AS idle_cost_nano_usd
FROM {db}.gpu_samples
GROUP BY bucket, team, app, namespace, node, gpu_model;
