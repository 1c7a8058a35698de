package killswitch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	chschema "github.com/burnrate/burnrate/schemas/clickhouse"
	"github.com/burnrate/burnrate/services/killswitch/alert"
	"github.com/burnrate/burnrate/services/killswitch/policy"
	"github.com/burnrate/burnrate/streams/kclient"
	"github.com/burnrate/burnrate/streams/kstage"
	"github.com/burnrate/burnrate/streams/ktopics"
)

// Deps are what Run needs from outside.
type Deps struct {
	Kafka      kclient.Config
	ClickHouse *chschema.Config // nil: no reconciliation
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	Getenv     func(string) string
	// SubjectKeys are the attribution keys the meter publishes spend for
	// and Combinations its combined subjects (meter config): budgets on
	// anything else would never see spend, so they are refused.
	SubjectKeys  []string
	Combinations [][]string
	TagKeys      []string // meter.tag_keys: "tag.<key>" subjects
	// OnAdminListen, if set, receives the admin API's bound address.
	OnAdminListen func(addr string)
}

// Run runs the killswitch until ctx is done.
func Run(ctx context.Context, cfg Config, d Deps) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("killswitch config: %w", err)
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	log := d.Log
	names := ktopics.WithPrefix(d.Kafka.TopicPrefix)
	m := newMetrics(d.Registerer)
	single := slices.Clone(d.SubjectKeys)
	for _, k := range d.TagKeys {
		single = append(single, "tag."+k)
	}
	check := keyChecker(single, d.Combinations)
	pol := &policy.Policies{}
	if cfg.PoliciesFile != "" {
		p, err := policy.Load(cfg.PoliciesFile, check)
		if err != nil {
			return fmt.Errorf("killswitch: %w", err)
		}
		pol = &p
		m.policies.WithLabelValues("ok").Inc()
	}
	token := ""
	if cfg.AdminListen != "" {
		if token = d.Getenv(cfg.AdminTokenEnv); token == "" {
			return fmt.Errorf("killswitch: admin_listen is set but $%s is empty: set a token, or admin_listen: \"\" to turn the admin API off", cfg.AdminTokenEnv)
		}
	}
	notifier, err := alert.New(cfg.Alerts, log, d.Registerer)
	if err != nil {
		return fmt.Errorf("killswitch: alerts: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	host, _ := os.Hostname()
	instance := fmt.Sprintf("%s-%d", host, os.Getpid())
	v := newView(time.Now)
	viewDone := make(chan error, 1)
	go func() { viewDone <- v.run(ctx, d.Kafka, log) }()
	nSpend, err := partitions(ctx, d.Kafka, names.Spend())
	if err != nil {
		return fmt.Errorf("killswitch: %w", err)
	}
	select {
	case <-v.caughtUp:
	case err := <-viewDone:
		return err
	case <-time.After(30 * time.Second):
		log.Warn("instances.v1 and verdicts.v1 not read to their end in 30 s; starting anyway (leases may count too few ingress instances)")
	}

	eng := newEngine(&cfg, names, log, m, instance, d.Now, notifier.Send)
	eng.pol, eng.nSpend, eng.manual = pol, nSpend, v.manual()
	eng.live, eng.published, eng.lastLive = v.live, v.latest, v.live()
	st, err := kstage.Open(kstage.Config{Name: "budgets", Service: "killswitch", Group: cfg.Group,
		Topics: []string{names.Spend(), names.Anomalies()}, Changelog: names.BudgetState(), FlushInterval: cfg.FlushInterval,
		SessionTimeout: cfg.SessionTimeout, EagerRestore: true, Kafka: d.Kafka, Log: log, Now: d.Now, Metrics: m.stage}, eng)
	if err != nil {
		return fmt.Errorf("killswitch: %w", err)
	}
	go notifier.Run(ctx)
	if cfg.PoliciesFile != "" {
		go policy.Watch(ctx, cfg.PoliciesFile, cfg.PoliciesReload, check, func(p policy.Policies) {
			same := false
			st.Locked(func() {
				if same = p.Version == eng.pol.Version; !same {
					eng.setPolicies(&p)
				}
			})
			if same {
				return
			}
			m.policies.WithLabelValues("ok").Inc()
			log.Info("policies reloaded", zap.String("version", p.Version), zap.Int("budgets", len(p.Budgets)))
		}, func(err error) {
			m.policies.WithLabelValues("error").Inc()
			log.Error("policies file not reloaded; the previous policies stay", zap.Error(err))
		})
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.active.Set(float64(len(v.active())))
			}
		}
	}()
	if d.ClickHouse != nil && cfg.ReconcileInterval > 0 {
		conn, err := chschema.Open(*d.ClickHouse)
		if err != nil {
			log.Warn("reconciliation off: ClickHouse", zap.Error(err))
		} else {
			defer conn.Close()
			go reconcile(ctx, conn, d.ClickHouse.Database, cfg.ReconcileInterval, st.Locked, eng, d.Now, m, log)
		}
	}
	var srv *http.Server
	if cfg.AdminListen != "" {
		ln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			st.Close()
			return fmt.Errorf("killswitch: admin_listen %s: %w", cfg.AdminListen, err)
		}
		if d.OnAdminListen != nil {
			d.OnAdminListen(ln.Addr().String())
		}
		a := &admin{token: token, locked: st.Locked, eng: eng, view: v, now: d.Now, log: log}
		srv = &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		log.Info("admin API listening", zap.String("addr", ln.Addr().String()))
	}
	log.Info("killswitch running", zap.String("instance", instance), zap.Int("budgets", len(pol.Budgets)),
		zap.Bool("loop_rules", pol.Loops.Enabled()), zap.Int("spend_partitions", nSpend))
	runErr := st.Run(ctx)
	if srv != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		c()
	}
	cancel()
	if err := <-viewDone; err != nil && !errors.Is(err, context.Canceled) {
		runErr = errors.Join(runErr, err)
	}
	return runErr
}

// partitions returns the partition count of topic.
func partitions(ctx context.Context, kcfg kclient.Config, topic string) (int, error) {
	cl, err := kclient.New(kcfg, "killswitch-meta")
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(tctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe %s: %w", topic, err)
	}
	t, ok := td[topic]
	if !ok || t.Err != nil || len(t.Partitions) == 0 {
		return 0, fmt.Errorf("topic %s missing (run `burnrate topics ensure`): %v", topic, t.Err)
	}
	return len(t.Partitions), nil
}

// keyChecker refuses budgets whose subject keys the meter does not publish.
func keyChecker(single []string, combos [][]string) func([]string) error {
	return func(keys []string) error {
		if len(keys) == 1 {
			if slices.Contains(single, keys[0]) || keys[0] == "agent_run" {
				return nil
			}
			return fmt.Errorf("the meter publishes no spend for %q (it does for %s and agent_run)", keys[0], strings.Join(single, ", "))
		}
		for _, c := range combos {
			if slices.Equal(c, keys) {
				return nil
			}
		}
		var have []string
		for _, c := range combos {
			have = append(have, strings.Join(c, "×"))
		}
		return fmt.Errorf("the meter publishes no spend for the combination %s; add [%s] to meter.combinations (it has: %s)",
			strings.Join(keys, "×"), strings.Join(keys, ", "), strings.Join(have, ", "))
	}
}
