package harness

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/burnrate/burnrate/services/dev/localch"
)

// KafkaVersion is the Apache Kafka release the harness runs (KRaft mode).
const KafkaVersion = "3.9.1"

const kafkaPOM = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.burnrate</groupId>
  <artifactId>test-kafka-broker</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>%s</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
`

// CacheDir is where Maven's local repository and the resolved classpath
// live between runs: $BURNRATE_CACHE, else ~/.cache/burnrate.
func CacheDir() string {
	if d := os.Getenv("BURNRATE_CACHE"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "burnrate")
	}
	return filepath.Join(os.TempDir(), "burnrate-cache")
}

// KafkaClasspath resolves kafka_2.13 and its dependencies from Maven Central
// into the cache (once; later calls read the cached classpath).
func KafkaClasspath(ctx context.Context) (string, error) {
	dir := filepath.Join(CacheDir(), "kafka-"+KafkaVersion)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	cpFile := filepath.Join(dir, "classpath.txt")
	if cp, ok := readClasspath(cpFile); ok {
		return cp, nil
	}
	unlock, err := localch.LockFile(filepath.Join(dir, "resolve.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if cp, ok := readClasspath(cpFile); ok {
		return cp, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", errors.New("harness: mvn not found; install Maven (apt-get install -y maven) to fetch the Kafka broker")
	}
	pom := filepath.Join(dir, "pom.xml")
	if err := os.WriteFile(pom, []byte(fmt.Sprintf(kafkaPOM, KafkaVersion)), 0o644); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	cmd := exec.CommandContext(ctx, "mvn", "-B", "-q", "-f", pom,
		"-Dmaven.repo.local="+filepath.Join(CacheDir(), "m2"),
		"dependency:build-classpath", "-Dmdep.outputFile="+cpFile+".tmp")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: resolve kafka_2.13:%s with Maven: %w\n%s", KafkaVersion, err, out)
	}
	if err := os.Rename(cpFile+".tmp", cpFile); err != nil {
		return "", fmt.Errorf("harness: %w", err)
	}
	cp, ok := readClasspath(cpFile)
	if !ok {
		return "", fmt.Errorf("harness: Maven wrote an unusable classpath to %s", cpFile)
	}
	return cp, nil
}

func readClasspath(path string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	cp := strings.TrimSpace(string(b))
	if !strings.Contains(cp, "kafka_2.13-"+KafkaVersion+".jar") {
		return "", false
	}
	for _, jar := range strings.Split(cp, ":") {
		if _, err := os.Stat(jar); err != nil {
			return "", false
		}
	}
	return cp, true
}

// Kafka is a single-node Apache Kafka broker in KRaft mode on loopback.
type Kafka struct {
	Dir        string
	Port       int
	ctrlPort   int
	classpath  string
	cmd        *exec.Cmd
	done       chan error
	ClusterID  string
	logPath    string
	stderrPath string
}

// Addr is the broker's bootstrap address.
func (k *Kafka) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.Port)) }

// StartKafka resolves the broker jars, formats a fresh storage dir under dir
// and starts kafka.Kafka, returning once a client sees the broker.
func StartKafka(ctx context.Context, dir string) (*Kafka, error) {
	cp, err := KafkaClasspath(ctx)
	if err != nil {
		return nil, err
	}
	k := &Kafka{Dir: dir, classpath: cp}
	if k.Port, err = localch.FreePort(); err != nil {
		return nil, err
	}
	if k.ctrlPort, err = localch.FreePort(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	props := filepath.Join(dir, "server.properties")
	if err := os.WriteFile(props, []byte(k.properties()), 0o644); err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	logProps := filepath.Join(dir, "log4j.properties")
	k.logPath = filepath.Join(dir, "broker.log")
	if err := os.WriteFile(logProps, []byte(fmt.Sprintf(log4jProps, k.logPath)), 0o644); err != nil {
		return nil, fmt.Errorf("harness: %w", err)
	}
	// A cluster id starting with '-' reads as a flag to kafka-storage.
	for k.ClusterID == "" || k.ClusterID[0] == '-' {
		id := uuid.New()
		k.ClusterID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	format := exec.CommandContext(ctx, "java", "-Dlog4j.configuration=file:"+logProps, "-cp", cp,
		"kafka.tools.StorageTool", "format", "-t", k.ClusterID, "-c", props, "--ignore-formatted")
	if out, err := format.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("harness: format kafka storage: %w\n%s", err, out)
	}
	return k, k.start(ctx)
}

func (k *Kafka) start(ctx context.Context) error {
	k.stderrPath = filepath.Join(k.Dir, "stdout.log")
	out, err := os.OpenFile(k.stderrPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	k.cmd = exec.Command("java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
		"-Dlog4j.configuration=file:"+filepath.Join(k.Dir, "log4j.properties"),
		"-cp", k.classpath, "kafka.Kafka", filepath.Join(k.Dir, "server.properties"))
	k.cmd.Stdout, k.cmd.Stderr = out, out
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("harness: start kafka: %w", err)
	}
	k.done = make(chan error, 1)
	go func() { k.done <- k.cmd.Wait(); out.Close() }()
	return k.waitReady(ctx, 60*time.Second)
}

func (k *Kafka) waitReady(ctx context.Context, limit time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()))
	if err != nil {
		return fmt.Errorf("harness: %w", err)
	}
	defer cl.Close()
	deadline := time.Now().Add(limit)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := cl.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-k.done:
			k.done <- werr
			return fmt.Errorf("harness: kafka exited during start (%v); see %s", werr, k.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("harness: kafka not ready after %s (%v); see %s", limit, err, k.logPath)
		}
	}
}

// Stop shuts the broker down (SIGTERM, then SIGKILL after 20 s).
func (k *Kafka) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(20 * time.Second):
		k.cmd.Process.Kill()
		<-k.done
	}
	k.cmd = nil
}

// Restart starts a stopped broker again with the same ports and data, for
// fault tests that take the broker away for a while.
func (k *Kafka) Restart(ctx context.Context) error {
	if k.cmd != nil {
		return errors.New("harness: kafka is still running")
	}
	return k.start(ctx)
}

func (k *Kafka) properties() string {
	return fmt.Sprintf(`process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:%[2]d
listeners=PLAINTEXT://127.0.0.1:%[1]d,CONTROLLER://127.0.0.1:%[2]d
advertised.listeners=PLAINTEXT://127.0.0.1:%[1]d
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=%[3]s
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.flush.interval.messages=9223372036854775807
num.network.threads=2
num.io.threads=4
`, k.Port, k.ctrlPort, filepath.Join(k.Dir, "data"))
}

const log4jProps = `log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=%s
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%%d] %%p %%m (%%c)%%n
`
