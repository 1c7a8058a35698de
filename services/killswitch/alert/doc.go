// Package alert delivers kill-switch alerts (thresholds crossed, budgets
// exhausted, forecast breaches, loops broken, severe anomalies, manual kills
// and lifts) to webhooks: generic JSON and Slack-compatible incoming
// webhooks.
//
// It owns the delivery: one queue and one goroutine per webhook, so a slow
// or failing receiver never holds up the others, and retries with jittered
// exponential backoff on network errors, timeouts, 429 and 5xx. Other 4xx
// answers are not retried.
//
// It must never block its caller: Send only enqueues, and drops the alert
// (counted and logged) when a webhook's queue is full. It never talks to
// Kafka; the killswitch decides what to alert on. It never logs a webhook's
// URL or header values, which may hold secrets; logs and metrics name the
// webhook instead.
package alert
