// Package localch runs a private ClickHouse server from Debian's
// clickhouse-server package for `burnrate dev` and the test harness.
//
// It owns the server's config, data directory and process; it installs the
// package with apt-get when the binary is missing (root only). It must never
// touch the system server's config or data under /etc or /var/lib.
package localch

import (
	"context"
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
)

// Options for a local server.
type Options struct {
	// Dir holds data, logs and config; it survives a restart when reused.
	Dir string
	// TCPPort and HTTPPort default to free loopback ports when 0.
	TCPPort  int
	HTTPPort int
	// Install allows apt-get install when the binary is missing.
	Install bool
	// Log receives progress lines (install, start); may be nil.
	Log func(format string, args ...any)
}

// Server is a running local ClickHouse.
type Server struct {
	Dir      string
	TCPPort  int
	HTTPPort int
	cmd      *exec.Cmd
	done     chan error
}

// Addr is the native-protocol address.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.TCPPort)) }

// HTTPAddr is the HTTP interface address.
func (s *Server) HTTPAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.HTTPPort)) }

// Binary finds the clickhouse-server executable.
func Binary() (string, error) {
	for _, p := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("clickhouse-server not found in PATH, /usr/sbin or /usr/bin")
}

// EnsureInstalled returns the server binary, installing Debian's
// clickhouse-server package with apt-get when it is missing and install is
// true. Concurrent callers (parallel test processes) are serialised with a
// lock file so apt-get runs once.
func EnsureInstalled(ctx context.Context, install bool, logf func(string, ...any)) (string, error) {
	if bin, err := Binary(); err == nil {
		return bin, nil
	}
	if !install {
		return "", errors.New("localch: clickhouse-server is not installed; run: apt-get update && apt-get install -y clickhouse-server")
	}
	unlock, err := LockFile(filepath.Join(os.TempDir(), "burnrate-apt.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if bin, err := Binary(); err == nil {
		return bin, nil
	}
	if logf != nil {
		logf("installing clickhouse-server with apt-get (one time)")
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "clickhouse-server"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("localch: apt-get %s: %w\n%s", strings.Join(args, " "), err, tail(out, 2000))
		}
	}
	return Binary()
}

// LockFile takes an exclusive flock on path, serialising work across
// processes (parallel test binaries); call the returned func to release.
func LockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("localch: open lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("localch: lock %s: %w", path, err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start writes a config into opts.Dir and starts the server, returning once
// it accepts native connections or ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := EnsureInstalled(ctx, opts.Install, opts.Log)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("localch: Options.Dir is required")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("localch: %w", err)
	}
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("localch: %w", err)
		}
	}
	s := &Server{Dir: dir, TCPPort: opts.TCPPort, HTTPPort: opts.HTTPPort}
	if s.TCPPort == 0 {
		if s.TCPPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	if s.HTTPPort == 0 {
		if s.HTTPPort, err = FreePort(); err != nil {
			return nil, err
		}
	}
	cfgPath := filepath.Join(dir, "config.xml")
	if err := os.WriteFile(cfgPath, []byte(serverConfig(dir, s.TCPPort, s.HTTPPort)), 0o644); err != nil {
		return nil, fmt.Errorf("localch: write config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersConfig), 0o644); err != nil {
		return nil, fmt.Errorf("localch: write users: %w", err)
	}
	// A pid file left by a crashed run makes the server refuse to start.
	os.Remove(filepath.Join(dir, "status"))
	stderr, err := os.Create(filepath.Join(dir, "log", "stderr.log"))
	if err != nil {
		return nil, fmt.Errorf("localch: %w", err)
	}
	s.cmd = exec.Command(bin, "--config-file="+cfgPath)
	s.cmd.Dir = dir
	s.cmd.Stdout = stderr
	s.cmd.Stderr = stderr
	// Own process group: a Ctrl-C to the parent reaches us first, and we stop
	// the server in order.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if opts.Log != nil {
		opts.Log("starting clickhouse-server on %s (data in %s)", s.Addr(), dir)
	}
	if err := s.cmd.Start(); err != nil {
		stderr.Close()
		return nil, fmt.Errorf("localch: start %s: %w", bin, err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait(); stderr.Close() }()
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", s.HTTPAddr(), time.Second)
		if err == nil {
			// The HTTP port answers "Ok." on /ping once tables are loaded.
			fmt.Fprintf(conn, "GET /ping HTTP/1.0\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 256)
			n, _ := conn.Read(buf)
			conn.Close()
			if strings.Contains(string(buf[:n]), "Ok.") {
				return nil
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("localch: clickhouse-server exited during start (%v); see %s", err, filepath.Join(s.Dir, "log"))
		case <-ctx.Done():
			return fmt.Errorf("localch: waiting for clickhouse-server: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("localch: clickhouse-server not ready after %s; see %s", limit, filepath.Join(s.Dir, "log"))
		}
	}
}

// Stop terminates the server and waits up to 20 s for it to exit.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		return errors.New("localch: clickhouse-server did not stop in 20s; killed")
	}
}

// Kill stops the server with SIGKILL (fault tests).
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
		s.done <- nil
	}
}

// Restart starts a stopped or killed server again on the same ports and data.
func (s *Server) Restart(ctx context.Context) error {
	n, err := Start(ctx, Options{Dir: s.Dir, TCPPort: s.TCPPort, HTTPPort: s.HTTPPort})
	if err != nil {
		return err
	}
	s.cmd, s.done = n.cmd, n.done
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func serverConfig(dir string, tcp, http int) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>%[1]s/log/clickhouse-server.log</log>
        <errorlog>%[1]s/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <http_port>%[3]d</http_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <merge_tree>
        <parts_to_throw_insert>3000</parts_to_throw_insert>
    </merge_tree>
</yandex>
`, dir, tcp, http)
}

const usersConfig = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`
