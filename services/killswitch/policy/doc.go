// Package policy owns the kill-switch's policy file: budgets (who may spend
// how much per period, and what happens at 100 %) and the agent loop rules.
// It parses and validates the file, reporting every problem with its path
// and line, watches it for changes, and computes budget periods in each
// budget's time zone.
//
// Money is exact: limits are parsed from the file's text into nano-USD and
// never pass through a float. A file that fails to parse never replaces
// the policies in use.
//
// policy never talks to Kafka; the killswitch service turns what it returns
// into budget state and verdicts.
package policy
