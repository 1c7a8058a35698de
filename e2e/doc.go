// Package e2e holds the end-to-end tests: the real burnrate binary against
// a real Apache Kafka broker and a real ClickHouse server started by the
// harness (e2e/harness). Nothing here stands in for Kafka or ClickHouse.
package e2e
