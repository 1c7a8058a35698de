package sink

import (
	"errors"
	"fmt"
	"time"
)

// Config is the sink section of the config file.
type Config struct {
	// Group is the Kafka consumer group every sink replica joins.
	Group string `yaml:"group"`
	// BatchRows flushes a partition's batch when it holds this many rows.
	BatchRows int `yaml:"batch_rows"`
	// BatchInterval flushes a non-empty batch at least this often.
	BatchInterval time.Duration `yaml:"batch_interval"`
	// MaxPendingRows pauses fetching a partition while this many of its rows
	// wait for ClickHouse (back-pressure); fetching resumes below half.
	MaxPendingRows int `yaml:"max_pending_rows"`
	// InsertTimeout bounds one INSERT attempt; failed attempts are retried
	// with backoff up to RetryBackoffMax between tries, forever.
	InsertTimeout   time.Duration `yaml:"insert_timeout"`
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// ShutdownTimeout bounds how long a graceful stop waits for pending
	// batches to land; what has not landed is read again by the next owner.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DefaultConfig returns the sink defaults.
func DefaultConfig() Config {
	return Config{
		Group:           "burnrate-sink",
		BatchRows:       10000,
		BatchInterval:   time.Second,
		MaxPendingRows:  50000,
		InsertTimeout:   30 * time.Second,
		RetryBackoffMax: 5 * time.Second,
		ShutdownTimeout: 15 * time.Second,
	}
}

// maxBatchRows keeps one INSERT under ClickHouse's min_insert_block_size_rows
// (1,048,576), so the server writes it as one block: one part, all or nothing.
const maxBatchRows = 1_000_000

// Validate names the bad field relative to the sink section.
func (c Config) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("group: must be set"))
	}
	if c.BatchRows <= 0 || c.BatchRows > maxBatchRows {
		errs = append(errs, fmt.Errorf("batch_rows: %d must be in 1..%d (one INSERT must stay one ClickHouse block)", c.BatchRows, maxBatchRows))
	}
	if c.BatchInterval <= 0 {
		errs = append(errs, fmt.Errorf("batch_interval: %s must be > 0", c.BatchInterval))
	}
	if c.MaxPendingRows < c.BatchRows {
		errs = append(errs, fmt.Errorf("max_pending_rows: %d must be >= batch_rows (%d)", c.MaxPendingRows, c.BatchRows))
	}
	if c.InsertTimeout <= 0 {
		errs = append(errs, fmt.Errorf("insert_timeout: %s must be > 0", c.InsertTimeout))
	}
	if c.RetryBackoffMax <= 0 {
		errs = append(errs, fmt.Errorf("retry_backoff_max: %s must be > 0", c.RetryBackoffMax))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s must be > 0", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
