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
	// BatchRows seals a partition's open batch when it holds this many rows.
	BatchRows int `yaml:"batch_rows"`
	// BatchInterval seals a non-empty batch at least this often: the most a
	// row waits before its INSERT starts.
	BatchInterval time.Duration `yaml:"batch_interval"`
	// MaxInsertRows caps one INSERT, which takes every sealed batch of every
	// partition of a table that is waiting (so INSERTs grow under load).
	MaxInsertRows int `yaml:"max_insert_rows"`
	// InsertConcurrency is how many INSERTs per table run at once; each
	// lane owns a fixed share of the partitions, so offsets stay in order.
	InsertConcurrency int `yaml:"insert_concurrency"`
	// MaxPendingRows pauses fetching while this many rows wait for
	// ClickHouse (back-pressure, bounding memory); fetching resumes below half.
	MaxPendingRows int `yaml:"max_pending_rows"`
	// InsertTimeout bounds one INSERT attempt; failed attempts are retried
	// with backoff up to RetryBackoffMax between tries, forever.
	InsertTimeout   time.Duration `yaml:"insert_timeout"`
	RetryBackoffMax time.Duration `yaml:"retry_backoff_max"`
	// SessionTimeout is the Kafka group session: how long a crashed replica
	// keeps its partitions before the others take them over.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// ShutdownTimeout bounds how long a graceful stop waits for pending
	// batches to land; what has not landed is read again by the next owner.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DefaultConfig returns the sink defaults.
func DefaultConfig() Config {
	return Config{
		Group:             "burnrate-sink",
		BatchRows:         10000,
		BatchInterval:     time.Second,
		MaxInsertRows:     200000,
		InsertConcurrency: 2,
		MaxPendingRows:    400000,
		InsertTimeout:     30 * time.Second,
		RetryBackoffMax:   5 * time.Second,
		SessionTimeout:    45 * time.Second,
		ShutdownTimeout:   15 * time.Second,
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
	if c.BatchRows <= 0 {
		errs = append(errs, fmt.Errorf("batch_rows: %d must be > 0", c.BatchRows))
	}
	if c.MaxInsertRows < c.BatchRows || c.MaxInsertRows > maxBatchRows {
		errs = append(errs, fmt.Errorf("max_insert_rows: %d must be in batch_rows (%d)..%d (one INSERT must stay one ClickHouse block)", c.MaxInsertRows, c.BatchRows, maxBatchRows))
	}
	if c.BatchInterval <= 0 {
		errs = append(errs, fmt.Errorf("batch_interval: %s must be > 0", c.BatchInterval))
	}
	if c.InsertConcurrency < 1 || c.InsertConcurrency > 64 {
		errs = append(errs, fmt.Errorf("insert_concurrency: %d must be in 1..64", c.InsertConcurrency))
	}
	if c.MaxPendingRows < c.MaxInsertRows {
		errs = append(errs, fmt.Errorf("max_pending_rows: %d must be >= max_insert_rows (%d)", c.MaxPendingRows, c.MaxInsertRows))
	}
	if c.InsertTimeout <= 0 {
		errs = append(errs, fmt.Errorf("insert_timeout: %s must be > 0", c.InsertTimeout))
	}
	if c.RetryBackoffMax <= 0 {
		errs = append(errs, fmt.Errorf("retry_backoff_max: %s must be > 0", c.RetryBackoffMax))
	}
	if c.SessionTimeout < 6*time.Second {
		errs = append(errs, fmt.Errorf("session_timeout: %s must be >= 6s (the brokers' default group.min.session.timeout.ms)", c.SessionTimeout))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s must be > 0", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
