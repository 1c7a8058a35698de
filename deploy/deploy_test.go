package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/burnrate/burnrate/services/config"
	"github.com/burnrate/burnrate/services/killswitch/policy"
	"github.com/burnrate/burnrate/streams/ktopics"
)

const (
	composePath       = "docker-compose.yml"
	composeConfigPath = "compose/burnrate.yaml"
	prometheusPath    = "prometheus.yml"
	rulesPath         = "../dashboards/prometheus/burnrate-rules.yaml"
	baseDir           = "k8s/base"
	productionDir     = "k8s/overlays/production"
	image             = "ghcr.io/burnrate/burnrate"
	namespace         = "burnrate"
)

// subcommands are the commands of services/burnrate/main.go that are built,
// read from the source so a renamed command fails here.
func subcommands(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../services/burnrate/main.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	re := regexp.MustCompile(`\{name: "([a-z-]+)",[^\n]*`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if !strings.Contains(m[0], "pending:") {
			out[m[1]] = true
		}
	}
	for _, want := range []string{"ingress", "sink", "meter", "killswitch", "gpu-agent", "migrate", "topics", "mock-upstream"} {
		if !out[want] {
			t.Fatalf("services/burnrate/main.go has no built command %q (found %v)", want, out)
		}
	}
	return out
}

// ruleJobs are the scrape jobs dashboards/prometheus/burnrate-rules.yaml
// selects on (job="...").
func ruleJobs(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, m := range regexp.MustCompile(`job="([^"]+)"`).FindAllStringSubmatch(string(b), -1) {
		jobs[m[1]] = true
	}
	want := []string{"burnrate-ingress", "burnrate-sink", "burnrate-meter", "burnrate-killswitch", "burnrate-gpu-agent"}
	if got := sortedKeys(jobs); !slices.Equal(got, sorted(want)) {
		t.Fatalf("%s selects jobs %v, want %v", rulesPath, got, sorted(want))
	}
	return jobs
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); sort.Strings(s); return s }

// portOf returns the port of a host:port listen address.
func portOf(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, addr, err)
	}
	return n
}

// ---------------------------------------------------------------------------
// Dockerfile

// The builder runs go.mod's Go, cgo is on (the gpu-agent dlopens DCGM and
// NVML), so the runtime base must have glibc, and the entrypoint is the
// binary that the compose commands and pod args are arguments of.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	var froms []string
	for _, m := range regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1) {
		froms = append(froms, m[1])
	}
	if len(froms) != 2 {
		t.Fatalf("Dockerfile: stages %v, want a builder and a runtime", froms)
	}
	if want := "golang:" + string(goVersion[1]) + "-"; !strings.HasPrefix(froms[0], want) {
		t.Errorf("Dockerfile: builder %s, want %s… (go.mod says go %s)", froms[0], want, goVersion[1])
	}
	if !strings.HasPrefix(froms[1], "gcr.io/distroless/base-") || !strings.HasSuffix(froms[1], ":nonroot") {
		t.Errorf("Dockerfile: runtime %s, want gcr.io/distroless/base-*:nonroot (glibc for the cgo build, non-root)", froms[1])
	}
	for _, want := range []string{
		"CGO_ENABLED=1 go build -trimpath",
		"./services/burnrate",
		"USER 65532:65532",
		`ENTRYPOINT ["/burnrate"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: no %q", want)
		}
	}
	// The compose spool volume inherits the owner of the image's directory.
	cfg, err := config.Load(composeConfigPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(df, "mkdir -p /out"+cfg.Ingress.Spool.Dir) {
		t.Errorf("Dockerfile: does not create ingress.spool.dir %s of %s for the nonroot user", cfg.Ingress.Spool.Dir, composeConfigPath)
	}
}

// ---------------------------------------------------------------------------
// Docker Compose

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extension fields hold the anchors services merge in.
	Burnrate any `yaml:"x-burnrate"`
}

// composeService lists the Compose keys this repository uses. Decoding
// rejects any other key, so a typo (depend_on) fails here instead of being
// ignored; add a key when you use a new one.
type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Hostname    string            `yaml:"hostname"`
	Restart     string            `yaml:"restart"`
	Profiles    []string          `yaml:"profiles"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Ulimits     map[string]any    `yaml:"ulimits"`
	Deploy      map[string]any    `yaml:"deploy"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(composePath)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", composePath, err)
	}
	if len(c.Services) == 0 {
		t.Fatalf("%s: no services", composePath)
	}
	return c
}

// isBurnrate tells the services that run the image built from this
// repository.
func (s composeService) isBurnrate() bool { return s.Build != nil }

// interpolate expands ${VAR:-default}, ${VAR-default} and ${VAR} the way
// Compose does with an empty environment, so the test sees the defaults.
func interpolate(s string) string {
	s = composeVar.ReplaceAllString(s, "$3")
	return strings.ReplaceAll(s, "$$", "$")
}

var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}`)

// envLookup is a service's environment as config.Load's lookup.
func (s composeService) envLookup() func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := s.Environment[k]
		return interpolate(v), ok
	}
}

// mount is one entry of a service's volumes.
type mount struct{ source, target string }

func (s composeService) mounts(t *testing.T, name string) []mount {
	t.Helper()
	var out []mount
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 {
			t.Errorf("compose %s: volume %q is not source:target[:mode]", name, v)
			continue
		}
		out = append(out, mount{source: parts[0], target: parts[1]})
	}
	return out
}

// publishedContainerPorts returns the container side of ports entries
// ("8080:8080", "127.0.0.1:8081:8081/tcp").
func (s composeService) publishedContainerPorts(t *testing.T, name string) []int {
	t.Helper()
	var out []int
	for _, p := range s.Ports {
		parts := strings.Split(p, ":")
		if len(parts) < 2 || len(parts) > 3 {
			t.Errorf("compose %s: port %q is not [ip:]host:container", name, p)
			continue
		}
		c, _, _ := strings.Cut(parts[len(parts)-1], "/")
		n, err := strconv.Atoi(c)
		if err != nil {
			t.Errorf("compose %s: port %q: %v", name, p, err)
			continue
		}
		out = append(out, n)
	}
	return out
}

// flagValue returns the value after flag in args ("--config FILE").
func flagValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// imageTag returns the tag of an image reference ("" without one).
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	i := strings.LastIndex(ref, ":")
	if i < 0 || i < strings.LastIndex(ref, "/") {
		return ""
	}
	return ref[i+1:]
}

func TestComposeImagesAndCommands(t *testing.T) {
	c := loadCompose(t)
	cmds := subcommands(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		switch {
		case s.isBurnrate():
			if s.Image != "burnrate:dev" {
				t.Errorf("compose %s: built from the repository as %q, want image burnrate:dev", name, s.Image)
			}
			if s.Build.Context != ".." || s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("compose %s: build %+v, want context .. and dockerfile deploy/Dockerfile", name, *s.Build)
			}
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("compose %s: %v", name, err)
			}
			if len(s.Command) == 0 || !cmds[s.Command[0]] {
				t.Errorf("compose %s: command %q does not start with a burnrate subcommand", name, s.Command)
				continue
			}
			if s.Command[0] == "topics" && (len(s.Command) < 2 || s.Command[1] != "ensure") {
				t.Errorf("compose %s: command %q, want topics ensure", name, s.Command)
			}
		case s.Image == "":
			t.Errorf("compose %s: neither image nor build", name)
		default:
			if tag := imageTag(s.Image); tag == "" || tag == "latest" {
				t.Errorf("compose %s: image %q needs an explicit version tag", name, s.Image)
			}
		}
	}
	for _, want := range []string{"kafka", "clickhouse", "migrate", "topics", "ingress", "sink", "meter", "killswitch", "gpu-agent", "mock-upstream", "prometheus", "grafana"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("compose: no service %s", want)
		}
	}
	for name, profile := range map[string]string{"gpu-agent": "gpu", "mock-upstream": "demo"} {
		if s := c.Services[name]; !slices.Equal(s.Profiles, []string{profile}) {
			t.Errorf("compose %s: profiles %v, want [%s]", name, s.Profiles, profile)
		}
	}
}

func TestComposeMountsAndDependencies(t *testing.T) {
	c := loadCompose(t)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		for _, m := range s.mounts(t, name) {
			if strings.HasPrefix(m.source, ".") || strings.HasPrefix(m.source, "/") {
				if _, err := os.Stat(m.source); err != nil {
					t.Errorf("compose %s: bind mount source: %v", name, err)
				}
			} else if _, ok := c.Volumes[m.source]; !ok {
				t.Errorf("compose %s: named volume %q is not declared under volumes", name, m.source)
			}
		}
		for dep, d := range s.DependsOn {
			target, ok := c.Services[dep]
			if !ok {
				t.Errorf("compose %s: depends_on %q, which is no service", name, dep)
				continue
			}
			switch d.Condition {
			case "service_healthy":
				if target.Healthcheck == nil {
					t.Errorf("compose %s: waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			case "service_completed_successfully":
				if target.Restart != "no" {
					t.Errorf("compose %s: waits for %s to complete, which has restart %q (want \"no\")", name, dep, target.Restart)
				}
			case "service_started":
			default:
				t.Errorf("compose %s: depends_on %s: condition %q", name, dep, d.Condition)
			}
			if len(target.Profiles) > 0 && !slices.Equal(target.Profiles, s.Profiles) {
				t.Errorf("compose %s: depends on %s, which runs only with profiles %v", name, dep, target.Profiles)
			}
		}
	}
	for _, name := range []string{"ingress", "sink", "meter", "killswitch", "gpu-agent"} {
		deps := c.Services[name].DependsOn
		if deps["topics"].Condition != "service_completed_successfully" {
			t.Errorf("compose %s: does not wait for topics to complete", name)
		}
	}
	if c.Services["sink"].DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Errorf("compose sink: does not wait for migrate to complete")
	}
}

// composeConfigs returns, by compose service, the config each Burnrate
// service sees: the mounted file with the service's environment on top. It
// checks that --config is compose/burnrate.yaml mounted, and that the file
// loads as the services load it.
func composeConfigs(t *testing.T, c composeFile) map[string]config.File {
	t.Helper()
	if _, err := config.Load(composeConfigPath, os.LookupEnv); err != nil {
		t.Fatalf("%s does not load: %v", composeConfigPath, err)
	}
	effective := map[string]config.File{}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if !s.isBurnrate() || len(s.Command) == 0 || s.Command[0] == "mock-upstream" {
			continue
		}
		cfgPath, ok := flagValue(s.Command, "--config")
		if !ok {
			t.Errorf("compose %s: command %q has no --config", name, s.Command)
			continue
		}
		mounted := false
		for _, m := range s.mounts(t, name) {
			if m.target == cfgPath {
				mounted = filepath.Clean(m.source) == filepath.Clean("./"+composeConfigPath)
			}
		}
		if !mounted {
			t.Errorf("compose %s: --config %s is not %s mounted", name, cfgPath, composeConfigPath)
		}
		f, err := config.Load(composeConfigPath, s.envLookup())
		if err != nil {
			t.Errorf("compose %s: config with the service's environment: %v", name, err)
			continue
		}
		effective[name] = f
	}
	return effective
}

// Published ports, the admin token, the spool volume and the policies file
// are what the config says.
func TestComposePortsAndPaths(t *testing.T) {
	c := loadCompose(t)
	effective := composeConfigs(t, c)
	ing := effective["ingress"]
	if p := portOf(t, "ingress.listen", ing.Ingress.Listen); !slices.Contains(c.Services["ingress"].publishedContainerPorts(t, "ingress"), p) {
		t.Errorf("compose ingress: ingress.listen port %d is not published (ports %q)", p, c.Services["ingress"].Ports)
	}
	ks := effective["killswitch"]
	if p := portOf(t, "killswitch.admin_listen", ks.Killswitch.AdminListen); !slices.Contains(c.Services["killswitch"].publishedContainerPorts(t, "killswitch"), p) {
		t.Errorf("compose killswitch: killswitch.admin_listen port %d is not published (ports %q)", p, c.Services["killswitch"].Ports)
	}
	if v := interpolate(c.Services["killswitch"].Environment[ks.Killswitch.AdminTokenEnv]); v == "" {
		t.Errorf("compose killswitch: %s is empty, and the killswitch refuses to start without it", ks.Killswitch.AdminTokenEnv)
	}

	// The spool must be a volume, or it is lost with the container.
	spooled := false
	for _, m := range c.Services["ingress"].mounts(t, "ingress") {
		spooled = spooled || m.target == ing.Ingress.Spool.Dir
	}
	if !spooled {
		t.Errorf("compose ingress: ingress.spool.dir %s is not a mounted volume", ing.Ingress.Spool.Dir)
	}

	// The policies file is mounted where the killswitch reads it, and parses.
	var policies string
	for _, m := range c.Services["killswitch"].mounts(t, "killswitch") {
		if m.target == ks.Killswitch.PoliciesFile {
			policies = m.source
		}
	}
	if policies == "" {
		t.Errorf("compose killswitch: killswitch.policies_file %s is not mounted", ks.Killswitch.PoliciesFile)
	} else if _, err := policy.Load(policies, nil); err != nil {
		t.Errorf("compose killswitch: %v", err)
	}
}

// Kafka, ClickHouse and the routes' upstreams are compose services, on the
// ports they serve.
func TestComposeAddresses(t *testing.T) {
	c := loadCompose(t)
	ing := composeConfigs(t, c)["ingress"]
	for _, b := range ing.Kafka.Brokers {
		host, _, _ := net.SplitHostPort(b)
		k, ok := c.Services[host]
		if !ok {
			t.Errorf("kafka.brokers: %s is no compose service", b)
			continue
		}
		if !strings.Contains(k.Environment["KAFKA_ADVERTISED_LISTENERS"], "://"+b) {
			t.Errorf("kafka.brokers: %s is not among the advertised listeners %q", b, k.Environment["KAFKA_ADVERTISED_LISTENERS"])
		}
	}
	for _, a := range ing.ClickHouse.Addr {
		host, port, _ := net.SplitHostPort(a)
		ch, ok := c.Services[host]
		if !ok {
			t.Errorf("clickhouse.addr: %s is no compose service", a)
			continue
		}
		if !strings.HasPrefix(ch.Image, "clickhouse/clickhouse-server:") || port != "9000" {
			t.Errorf("clickhouse.addr: %s is not the native port of a ClickHouse server (image %q)", a, ch.Image)
		}
	}

	// Routes to the mock go to its --listen port.
	for i, r := range ing.Ingress.Routes {
		u, err := url.Parse(r.BaseURL)
		if err != nil {
			t.Fatal(err)
		}
		up, ok := c.Services[u.Hostname()]
		if !ok {
			t.Errorf("ingress.routes[%d].base_url %s: %s is no compose service", i, r.BaseURL, u.Hostname())
			continue
		}
		if listen, _ := flagValue(up.Command, "--listen"); portOf(t, "mock-upstream --listen", listen) != portOf(t, "base_url", u.Host) {
			t.Errorf("ingress.routes[%d].base_url %s: %s listens on %s", i, r.BaseURL, u.Hostname(), listen)
		}
	}
}

// Prometheus scrapes every service on metrics.listen's port, under the job
// names the rules expect, and loads the rules where they are mounted.
func TestComposePrometheus(t *testing.T) {
	c := loadCompose(t)
	effective := composeConfigs(t, c)
	prom := loadPrometheus(t)
	jobs := ruleJobs(t)
	var names []string
	for _, sc := range prom.ScrapeConfigs {
		names = append(names, sc.JobName)
		service := strings.TrimPrefix(sc.JobName, "burnrate-")
		f, ok := effective[service]
		if !ok {
			t.Errorf("prometheus job %s: no Burnrate compose service %s", sc.JobName, service)
			continue
		}
		want := portOf(t, "metrics.listen", f.Metrics.Listen)
		targets := sc.targets(t)
		if len(targets) == 0 {
			t.Errorf("prometheus job %s: no targets", sc.JobName)
		}
		for _, tg := range targets {
			host, _, _ := net.SplitHostPort(tg)
			if host != service || portOf(t, "prometheus target", tg) != want {
				t.Errorf("prometheus job %s: target %s, want %s:%d (metrics.listen)", sc.JobName, tg, service, want)
			}
		}
	}
	if got := sorted(names); !slices.Equal(got, sortedKeys(jobs)) {
		t.Errorf("prometheus jobs %v, want the rules' jobs %v", got, sortedKeys(jobs))
	}
	promMounts := map[string]string{}
	for _, m := range c.Services["prometheus"].mounts(t, "prometheus") {
		promMounts[m.target] = filepath.Clean(m.source)
	}
	if promMounts["/etc/prometheus/prometheus.yml"] != prometheusPath {
		t.Errorf("compose prometheus: %s is not mounted at /etc/prometheus/prometheus.yml", prometheusPath)
	}
	for _, rf := range prom.RuleFiles {
		if promMounts[rf] != filepath.Clean(rulesPath) {
			t.Errorf("prometheus rule_files: %s is not %s mounted", rf, rulesPath)
		}
	}
	if len(prom.RuleFiles) == 0 {
		t.Errorf("prometheus: no rule_files")
	}
}

type prometheusConfig struct {
	Global        map[string]any `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName       string `yaml:"job_name"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
	DNSSDConfigs []struct {
		Names []string `yaml:"names"`
		Type  string   `yaml:"type"`
		Port  int      `yaml:"port"`
	} `yaml:"dns_sd_configs"`
}

func (sc scrapeConfig) targets(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, s := range sc.StaticConfigs {
		out = append(out, s.Targets...)
	}
	for _, d := range sc.DNSSDConfigs {
		if d.Type != "A" && d.Type != "AAAA" {
			t.Errorf("prometheus job %s: dns_sd type %q: use A, whose port this test can check", sc.JobName, d.Type)
		}
		for _, n := range d.Names {
			out = append(out, net.JoinHostPort(n, strconv.Itoa(d.Port)))
		}
	}
	return out
}

func loadPrometheus(t *testing.T) prometheusConfig {
	t.Helper()
	b, err := os.ReadFile(prometheusPath)
	if err != nil {
		t.Fatal(err)
	}
	var p prometheusConfig
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", prometheusPath, err)
	}
	return p
}

// The compose copy of the Grafana datasources differs from
// dashboards/provisioning only in the addresses, which name compose
// services.
func TestComposeGrafanaDatasources(t *testing.T) {
	type datasources struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name           string            `yaml:"name"`
			Type           string            `yaml:"type"`
			UID            string            `yaml:"uid"`
			Access         string            `yaml:"access"`
			URL            string            `yaml:"url"`
			Editable       bool              `yaml:"editable"`
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	load := func(p string) datasources {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d datasources
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return d
	}
	orig := load("../dashboards/provisioning/datasources/burnrate.yaml")
	ours := load("compose/grafana-datasources.yaml")
	c := loadCompose(t)
	mounted := false
	for _, m := range c.Services["grafana"].mounts(t, "grafana") {
		mounted = mounted || (filepath.Clean(m.source) == "compose/grafana-datasources.yaml" &&
			strings.HasPrefix(m.target, "/etc/grafana/provisioning/datasources/"))
	}
	if !mounted {
		t.Errorf("compose grafana: compose/grafana-datasources.yaml is not mounted into /etc/grafana/provisioning/datasources/")
	}
	if len(orig.Datasources) != len(ours.Datasources) {
		t.Fatalf("compose datasources: %d, dashboards/provisioning has %d", len(ours.Datasources), len(orig.Datasources))
	}
	for i, o := range orig.Datasources {
		d := ours.Datasources[i]
		if d.Name != o.Name || d.Type != o.Type || d.UID != o.UID {
			t.Errorf("compose datasource %d: %s %s %s, want %s %s %s", i, d.Name, d.Type, d.UID, o.Name, o.Type, o.UID)
		}
		if !maps.Equal(d.SecureJSONData, o.SecureJSONData) {
			t.Errorf("compose datasource %s: secureJsonData %v, want %v", d.Name, d.SecureJSONData, o.SecureJSONData)
		}
		for k, v := range o.JSONData {
			if k != "host" && fmt.Sprint(d.JSONData[k]) != fmt.Sprint(v) {
				t.Errorf("compose datasource %s: jsonData.%s %v, want %v", d.Name, k, d.JSONData[k], v)
			}
		}
		host := fmt.Sprint(d.JSONData["host"])
		if d.URL != "" {
			u, err := url.Parse(d.URL)
			if err != nil {
				t.Fatal(err)
			}
			host = u.Hostname()
		}
		if _, ok := c.Services[host]; !ok {
			t.Errorf("compose datasource %s: host %q is no compose service", d.Name, host)
		}
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

// object is one decoded document of a manifest file.
type object struct {
	file      string
	kind      string // apiVersion/kind, e.g. apps/v1/Deployment
	name      string
	namespace string
	obj       any
}

// kinds maps apiVersion/kind to the Go type a document decodes into; a
// kind not listed here fails the test.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/DaemonSet":                      func() any { return &appsv1.DaemonSet{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	// No Go type here: checked as a map.
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return &map[string]any{} },
}

// decodeStrict decodes one document into its kind's type; unknown fields
// and duplicate keys are errors.
func decodeStrict(doc []byte) (object, error) {
	var tm struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
	}
	if err := sigsyaml.Unmarshal(doc, &tm); err != nil {
		return object{}, err
	}
	kind := tm.APIVersion + "/" + tm.Kind
	newObj, ok := kinds[kind]
	if !ok {
		return object{}, fmt.Errorf("%s %q: kind not known to the test", kind, tm.Metadata.Name)
	}
	obj := newObj()
	if err := sigsyaml.UnmarshalStrict(doc, obj); err != nil {
		return object{}, fmt.Errorf("%s %q: %w", kind, tm.Metadata.Name, err)
	}
	return object{kind: kind, name: tm.Metadata.Name, namespace: tm.Metadata.Namespace, obj: obj}, nil
}

func readObjects(t *testing.T, file string) []object {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var out []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		o, err := decodeStrict(doc)
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		o.file = file
		out = append(out, o)
	}
	return out
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Namespace  string   `yaml:"namespace"`
	Resources  []string `yaml:"resources"`
	Images     []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
		Digest  string `yaml:"digest"`
	} `yaml:"images"`
	Patches []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
}

func loadKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	p := filepath.Join(dir, "kustomization.yaml")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&k); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s: %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", p, k.APIVersion, k.Kind)
	}
	return k
}

// manifests holds the decoded base.
type manifests struct {
	all        []object
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	services   map[string]*corev1.Service
	workloads  map[string]workload
	hpas       map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs       map[string]*policyv1.PodDisruptionBudget
	monitors   []map[string]any
}

// workload is a Deployment, DaemonSet or Job by its pod template.
type workload struct {
	kind     string
	name     string
	replicas int32 // 0 for DaemonSets and Jobs
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

// longRunning tells services from one-shot Jobs.
func (w workload) longRunning() bool { return w.kind != "Job" }

func loadBase(t *testing.T) manifests {
	t.Helper()
	k := loadKustomization(t, baseDir)
	m := manifests{
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		services: map[string]*corev1.Service{}, workloads: map[string]workload{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
	}
	for _, r := range k.Resources {
		for _, o := range readObjects(t, filepath.Join(baseDir, r)) {
			m.all = append(m.all, o)
			switch v := o.obj.(type) {
			case *corev1.ConfigMap:
				m.configMaps[o.name] = v
			case *corev1.Secret:
				m.secrets[o.name] = v
			case *corev1.Service:
				m.services[o.name] = v
			case *appsv1.Deployment:
				var n int32 = 1
				if v.Spec.Replicas != nil {
					n = *v.Spec.Replicas
				}
				m.workloads[o.name] = workload{"Deployment", o.name, n, v.Spec.Selector, v.Spec.Template}
			case *appsv1.DaemonSet:
				m.workloads[o.name] = workload{"DaemonSet", o.name, 0, v.Spec.Selector, v.Spec.Template}
			case *batchv1.Job:
				m.workloads[o.name] = workload{"Job", o.name, 0, v.Spec.Selector, v.Spec.Template}
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas[o.name] = v
			case *policyv1.PodDisruptionBudget:
				m.pdbs[o.name] = v
			case *map[string]any:
				m.monitors = append(m.monitors, *v)
			}
		}
	}
	return m
}

// config returns the ConfigMap's burnrate.yaml loaded with lookup as the
// environment.
func (m manifests) config(t *testing.T, lookup func(string) (string, bool)) config.File {
	t.Helper()
	cm := m.configMaps["burnrate-config"]
	if cm == nil {
		t.Fatal("no ConfigMap burnrate-config")
	}
	p := filepath.Join(t.TempDir(), "burnrate.yaml")
	if err := os.WriteFile(p, []byte(cm.Data["burnrate.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(p, lookup)
	if err != nil {
		t.Fatalf("ConfigMap burnrate-config, burnrate.yaml: %v", err)
	}
	return f
}

// podEnv is the environment every pod gets from the Secret burnrate, as a
// lookup for config.Load: what the services see, whatever this shell has.
func (m manifests) podEnv() func(string) (string, bool) {
	return func(k string) (string, bool) {
		s := m.secrets["burnrate"]
		if s == nil {
			return "", false
		}
		if v, ok := s.StringData[k]; ok {
			return v, true
		}
		v, ok := s.Data[k]
		return string(v), ok
	}
}

// volumeAt returns the volume mounted at the directory holding file, and
// the mount.
func volumeAt(pod corev1.PodSpec, c corev1.Container, file string) (*corev1.Volume, *corev1.VolumeMount) {
	var best *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if file == vm.MountPath || strings.HasPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			if best == nil || len(vm.MountPath) > len(best.MountPath) {
				best = &c.VolumeMounts[i]
			}
		}
	}
	if best == nil {
		return nil, nil
	}
	for i, v := range pod.Volumes {
		if v.Name == best.Name {
			return &pod.Volumes[i], best
		}
	}
	return nil, best
}

func TestKustomizationListsEveryFile(t *testing.T) {
	k := loadKustomization(t, baseDir)
	if k.Namespace != namespace {
		t.Errorf("base kustomization: namespace %q, want %s", k.Namespace, namespace)
	}
	entries, err := os.ReadDir(baseDir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && e.Name() != "kustomization.yaml" && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
			files = append(files, e.Name())
		}
	}
	if got, want := sorted(k.Resources), sorted(files); !slices.Equal(got, want) {
		t.Errorf("base kustomization resources %v, files in %s %v", got, baseDir, want)
	}
}

// UnmarshalStrict must reject what the API server would drop or refuse.
func TestDecodeIsStrict(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 3}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80}]}\nspec: {}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("decodeStrict accepted:\n%s", doc)
		}
	}
}

func TestKubernetesNamespaceConfigAndSecrets(t *testing.T) {
	m := loadBase(t)
	names := map[string]bool{}
	haveNamespace := false
	for _, o := range m.all {
		if o.kind == "v1/Namespace" {
			haveNamespace = haveNamespace || o.name == namespace
			continue
		}
		if o.namespace != namespace {
			t.Errorf("%s: %s %s: namespace %q, want %s", o.file, o.kind, o.name, o.namespace, namespace)
		}
		if id := o.kind + "/" + o.name; names[id] {
			t.Errorf("%s: %s defined twice", o.file, id)
		}
		names[o.kind+"/"+o.name] = true
	}
	if !haveNamespace {
		t.Errorf("no Namespace %s", namespace)
	}

	m.config(t, os.LookupEnv) // fails unless burnrate.yaml loads
	cfg := m.config(t, m.podEnv())
	pp := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(pp, []byte(m.configMaps["burnrate-config"].Data["policies.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Load(pp, nil); err != nil {
		t.Errorf("ConfigMap burnrate-config, policies.yaml: %v", err)
	}
	sec := m.secrets["burnrate"]
	if sec == nil || sec.Type != corev1.SecretTypeOpaque {
		t.Fatal("no Opaque Secret burnrate")
	}
	for _, k := range []string{cfg.Killswitch.AdminTokenEnv, "BURNRATE_CLICKHOUSE_PASSWORD", "BURNRATE_KAFKA_SASL_PASSWORD"} {
		if !hasKey(sec, k) {
			t.Errorf("Secret burnrate has no %s", k)
		}
	}
}

func TestKubernetesWorkloads(t *testing.T) {
	m := loadBase(t)
	cfg := m.config(t, m.podEnv())
	cmds := subcommands(t)
	seen := map[string]bool{}
	for _, name := range sortedKeys(m.workloads) {
		w := m.workloads[name]
		t.Run(name, func(t *testing.T) {
			sub := checkPod(t, w, cmds)
			if sub == "" {
				return
			}
			seen[sub] = true
			c := w.pod.Spec.Containers[0]
			checkMounts(t, w, c, m)
			checkSecurity(t, w, c, sub)
			checkPorts(t, w, c, sub, cfg)
			switch sub {
			case "ingress":
				checkIngressPod(t, w, c, cfg, m)
			case "killswitch":
				if v, _ := volumeAt(w.pod.Spec, c, cfg.Killswitch.PoliciesFile); v == nil || v.ConfigMap == nil ||
					v.ConfigMap.Name != "burnrate-config" || !hasData(m.configMaps[v.ConfigMap.Name], path.Base(cfg.Killswitch.PoliciesFile)) {
					t.Errorf("killswitch.policies_file %s is not a file of the mounted ConfigMap burnrate-config", cfg.Killswitch.PoliciesFile)
				}
			case "gpu-agent":
				checkGPUAgentPod(t, w, c, cfg)
			}
		})
	}
	for _, want := range []string{"ingress", "sink", "meter", "killswitch", "gpu-agent", "migrate", "topics"} {
		if !seen[want] {
			t.Errorf("no workload runs burnrate %s", want)
		}
	}
	if w := m.workloads["burnrate-gpu-agent"]; w.kind != "DaemonSet" {
		t.Errorf("burnrate-gpu-agent is a %q, want a DaemonSet", w.kind)
	}
	for name, want := range map[string]int32{"burnrate-ingress": 3, "burnrate-sink": 2, "burnrate-meter": 2, "burnrate-killswitch": 1} {
		if w := m.workloads[name]; w.kind != "Deployment" || w.replicas != want {
			t.Errorf("%s: %s with %d replicas, want a Deployment with %d", name, w.kind, w.replicas, want)
		}
	}
}

// checkPod checks labels, selector and the one container's image and args,
// and returns the subcommand it runs ("" when there is none).
func checkPod(t *testing.T, w workload, cmds map[string]bool) string {
	t.Helper()
	pod := w.pod.Spec
	lbl := w.pod.Labels
	if lbl["app.kubernetes.io/name"] != w.name || lbl["app.kubernetes.io/part-of"] != "burnrate" {
		t.Errorf("pod labels %v, want app.kubernetes.io/name=%s and app.kubernetes.io/part-of=burnrate", lbl, w.name)
	}
	if w.kind != "Job" {
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(lbl)) {
			t.Errorf("selector %v does not select its own pods (%v)", w.selector, err)
		}
	} else if pod.RestartPolicy != corev1.RestartPolicyOnFailure && pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q", pod.RestartPolicy)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken must be false (nothing calls the API server)")
	}
	if len(pod.Containers) != 1 {
		t.Errorf("%d containers, want 1", len(pod.Containers))
		return ""
	}
	c := pod.Containers[0]
	if repo, _, _ := strings.Cut(c.Image, ":"); repo != image {
		t.Errorf("image %q, want %s (kustomize images pins the tag)", c.Image, image)
	}
	if len(c.Command) > 0 {
		t.Errorf("command %q replaces the image's ENTRYPOINT /burnrate; use args", c.Command)
	}
	if len(c.Args) == 0 || !cmds[c.Args[0]] {
		t.Errorf("args %q do not start with a burnrate subcommand", c.Args)
		return ""
	}
	sub := c.Args[0]
	if sub == "topics" && (len(c.Args) < 2 || c.Args[1] != "ensure") {
		t.Errorf("args %q, want topics ensure", c.Args)
	}
	if want := "burnrate-" + sub; w.name != want {
		t.Errorf("runs %s; name it %s", sub, want)
	}
	return sub
}

// checkMounts checks that --config is a file of the mounted ConfigMap,
// that every ConfigMap and Secret used exists, and the envFrom.
func checkMounts(t *testing.T, w workload, c corev1.Container, m manifests) {
	t.Helper()
	pod := w.pod.Spec
	cfgPath, ok := flagValue(c.Args, "--config")
	v, vm := volumeAt(pod, c, cfgPath)
	switch {
	case !ok:
		t.Errorf("args %q have no --config", c.Args)
	case v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "burnrate-config" || path.Dir(cfgPath) != path.Clean(vm.MountPath):
		t.Errorf("--config %s is not a file of the mounted ConfigMap burnrate-config", cfgPath)
	case !hasData(m.configMaps[v.ConfigMap.Name], path.Base(cfgPath)):
		t.Errorf("--config %s: the ConfigMap has no key %s", cfgPath, path.Base(cfgPath))
	}
	for _, v := range pod.Volumes {
		if v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil {
			t.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && m.secrets[v.Secret.SecretName] == nil {
			t.Errorf("volume %s: no Secret %s", v.Name, v.Secret.SecretName)
		}
	}
	for _, vm := range c.VolumeMounts {
		if vm.SubPath != "" {
			t.Errorf("volume %s mounted with subPath: the file would never see an update", vm.Name)
		}
	}
	fromSecret := false
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			fromSecret = fromSecret || e.SecretRef.Name == "burnrate"
			if m.secrets[e.SecretRef.Name] == nil {
				t.Errorf("envFrom: no Secret %s", e.SecretRef.Name)
			}
		}
	}
	if !fromSecret {
		t.Errorf("no envFrom the Secret burnrate")
	}
}

// checkSecurity: read-only root, no escalation, no capabilities, resources;
// non-root except the gpu-agent (gpu-agent.yaml says why).
func checkSecurity(t *testing.T, w workload, c corev1.Container, sub string) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext must set readOnlyRootFilesystem, allowPrivilegeEscalation: false and drop ALL")
	}
	psc := w.pod.Spec.SecurityContext
	nonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	if nonRoot == (sub == "gpu-agent") {
		t.Errorf("runAsNonRoot %v", nonRoot)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("needs cpu and memory requests and a memory limit")
	}
}

// servesOn names the ports each service listens on; checkPorts holds them
// to the config.
var servesOn = map[string][]string{
	"ingress": {"http", "metrics"}, "sink": {"metrics"}, "meter": {"metrics"},
	"killswitch": {"admin", "metrics"}, "gpu-agent": {"metrics"},
}

func checkPorts(t *testing.T, w workload, c corev1.Container, sub string, cfg config.File) {
	t.Helper()
	want := map[string]int{
		"http":    portOf(t, "ingress.listen", cfg.Ingress.Listen),
		"admin":   portOf(t, "killswitch.admin_listen", cfg.Killswitch.AdminListen),
		"metrics": portOf(t, "metrics.listen", cfg.Metrics.Listen),
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if w.longRunning() {
		for _, pn := range servesOn[sub] {
			if int(ports[pn]) != want[pn] {
				t.Errorf("container port %s is %d, the config says %d", pn, ports[pn], want[pn])
			}
		}
		if len(ports) != len(servesOn[sub]) {
			t.Errorf("ports %v, want exactly %v", ports, servesOn[sub])
		}
		if c.LivenessProbe == nil {
			t.Errorf("no liveness probe")
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		var port string
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port.String()
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port.String()
		}
		if _, ok := ports[port]; !ok {
			t.Errorf("a probe uses port %q, which the container does not name", port)
		}
	}
}

func hasData(cm *corev1.ConfigMap, k string) bool {
	if cm == nil {
		return false
	}
	_, ok := cm.Data[k]
	return ok
}

func checkIngressPod(t *testing.T, w workload, c corev1.Container, cfg config.File, m manifests) {
	t.Helper()
	pod := w.pod.Spec
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "http" {
		t.Errorf("ingress: readiness probe must GET /readyz on port http")
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "http" {
		t.Errorf("ingress: liveness probe must GET /healthz on port http")
	}
	// The spool is a writable emptyDir at ingress.spool.dir, bigger than
	// spool.max_bytes, so a full spool refuses calls before eviction.
	v, vm := volumeAt(pod, c, cfg.Ingress.Spool.Dir)
	switch {
	case v == nil || v.EmptyDir == nil:
		t.Errorf("ingress: ingress.spool.dir %s is not an emptyDir mount", cfg.Ingress.Spool.Dir)
	case vm.ReadOnly:
		t.Errorf("ingress: the spool is mounted read-only")
	case v.EmptyDir.SizeLimit == nil || v.EmptyDir.SizeLimit.Value() <= cfg.Ingress.Spool.MaxBytes:
		t.Errorf("ingress: spool emptyDir sizeLimit %v must exceed ingress.spool.max_bytes %d", v.EmptyDir.SizeLimit, cfg.Ingress.Spool.MaxBytes)
	}
	// Provider keys come from files of a mounted Secret.
	for i, r := range cfg.Ingress.Routes {
		if r.APIKeyFile == "" {
			continue
		}
		v, _ := volumeAt(pod, c, r.APIKeyFile)
		if v == nil || v.Secret == nil {
			t.Errorf("ingress.routes[%d].api_key_file %s is not in a mounted Secret", i, r.APIKeyFile)
			continue
		}
		if s := m.secrets[v.Secret.SecretName]; s == nil || !hasKey(s, path.Base(r.APIKeyFile)) {
			t.Errorf("ingress.routes[%d].api_key_file %s: Secret %s has no key %s", i, r.APIKeyFile, v.Secret.SecretName, path.Base(r.APIKeyFile))
		}
	}
}

func hasKey(s *corev1.Secret, k string) bool {
	_, a := s.StringData[k]
	_, b := s.Data[k]
	return a || b
}

func checkGPUAgentPod(t *testing.T, w workload, c corev1.Container, cfg config.File) {
	t.Helper()
	pod := w.pod.Spec
	if pod.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("gpu-agent: nodeSelector %v, want nvidia.com/gpu.present=true", pod.NodeSelector)
	}
	tolerated := false
	for _, tol := range pod.Tolerations {
		tolerated = tolerated || (tol.Key == "nvidia.com/gpu" && tol.Operator == corev1.TolerationOpExists)
	}
	if !tolerated {
		t.Errorf("gpu-agent: no toleration for nvidia.com/gpu")
	}
	if cfg.GPUAgent.KubeletSocket == "" {
		t.Fatalf("gpu_agent.kubelet_socket is empty")
	}
	v, vm := volumeAt(pod, c, cfg.GPUAgent.KubeletSocket)
	if v == nil || v.HostPath == nil || v.HostPath.Path != "/var/lib/kubelet/pod-resources" || !vm.ReadOnly ||
		path.Dir(cfg.GPUAgent.KubeletSocket) != vm.MountPath {
		t.Errorf("gpu-agent: gpu_agent.kubelet_socket %s is not in a read-only hostPath mount of /var/lib/kubelet/pod-resources", cfg.GPUAgent.KubeletSocket)
	}
	nodeName := false
	for _, e := range c.Env {
		nodeName = nodeName || (e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName")
	}
	if !nodeName {
		t.Errorf("gpu-agent: no NODE_NAME from spec.nodeName")
	}
	// gpu_agent.node is empty and has no environment override, so the
	// hostname names the node in gpu.v1: only on the host network is that
	// the node's and not the pod's.
	if cfg.GPUAgent.Node == "" && !pod.HostNetwork {
		t.Errorf("gpu-agent: gpu_agent.node is empty and the pod is not on the host network: gpu.v1 would name pods, not nodes")
	}
	if pod.HostNetwork && pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("gpu-agent: hostNetwork needs dnsPolicy ClusterFirstWithHostNet to resolve the brokers")
	}
}

func TestKubernetesServicesAndMonitoring(t *testing.T) {
	m := loadBase(t)
	jobs := ruleJobs(t)

	selects := func(sel map[string]string) []workload {
		var out []workload
		for _, name := range sortedKeys(m.workloads) {
			w := m.workloads[name]
			if w.longRunning() && len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(w.pod.Labels)) {
				out = append(out, w)
			}
		}
		return out
	}
	metricsServices := map[string]string{} // workload → Service
	for _, name := range sortedKeys(m.services) {
		s := m.services[name]
		ws := selects(s.Spec.Selector)
		if len(ws) != 1 {
			t.Errorf("Service %s: selector %v matches %d workloads, want 1", name, s.Spec.Selector, len(ws))
			continue
		}
		w := ws[0]
		c := w.pod.Spec.Containers[0]
		// Service port = container port, so clients use the numbers of the
		// config (burnrate budgets --admin http://burnrate-killswitch:8081).
		for _, p := range s.Spec.Ports {
			i := slices.IndexFunc(c.Ports, func(cp corev1.ContainerPort) bool {
				return p.TargetPort.String() == cp.Name || p.TargetPort.IntValue() == int(cp.ContainerPort)
			})
			switch {
			case i < 0:
				t.Errorf("Service %s: port %s targets %s, which is no port of %s", name, p.Name, p.TargetPort.String(), w.name)
			case c.Ports[i].ContainerPort != p.Port:
				t.Errorf("Service %s: port %s is %d, the container's is %d", name, p.Name, p.Port, c.Ports[i].ContainerPort)
			}
		}
		if s.Labels["app.kubernetes.io/component"] != "metrics" {
			continue
		}
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s: a metrics Service is headless (clusterIP: None)", name)
		}
		if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Name != "metrics" || s.Spec.Ports[0].Port != 9464 {
			t.Errorf("Service %s: want one port named metrics, 9464", name)
		}
		if job := s.Labels["app.kubernetes.io/name"]; !jobs[job] || job != w.name {
			t.Errorf("Service %s: app.kubernetes.io/name %q, want %s, a job of the Prometheus rules", name, job, w.name)
		}
		if prev, ok := metricsServices[w.name]; ok {
			t.Errorf("%s has two metrics Services: %s and %s", w.name, prev, name)
		}
		metricsServices[w.name] = name
	}
	for _, name := range sortedKeys(m.workloads) {
		if w := m.workloads[name]; w.longRunning() && metricsServices[name] == "" {
			t.Errorf("%s %s has no metrics Service", w.kind, name)
		}
	}
	if s := m.services["burnrate-killswitch"]; s == nil || len(s.Spec.Ports) != 1 || s.Spec.Ports[0].TargetPort.String() != "admin" {
		t.Errorf("no Service burnrate-killswitch for the admin API")
	}

	// The ServiceMonitor scrapes exactly the metrics Services, naming each
	// job after the workload.
	if len(m.monitors) != 1 {
		t.Fatalf("%d ServiceMonitors, want 1", len(m.monitors))
	}
	var sm struct {
		Spec struct {
			JobLabel          string `json:"jobLabel"`
			NamespaceSelector struct {
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port string `json:"port"`
				Path string `json:"path"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	b, err := sigsyaml.Marshal(m.monitors[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := sigsyaml.Unmarshal(b, &sm); err != nil {
		t.Fatal(err)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Errorf("ServiceMonitor: no endpoints")
	}
	for _, e := range sm.Spec.Endpoints {
		if e.Port != "metrics" || (e.Path != "" && e.Path != "/metrics") {
			t.Errorf("ServiceMonitor: endpoint port %q path %q, want port metrics path /metrics", e.Port, e.Path)
		}
	}
	if !slices.Contains(sm.Spec.NamespaceSelector.MatchNames, namespace) {
		t.Errorf("ServiceMonitor: namespaceSelector %v misses %s", sm.Spec.NamespaceSelector.MatchNames, namespace)
	}
	if sm.Spec.JobLabel != "app.kubernetes.io/name" {
		t.Errorf("ServiceMonitor: jobLabel %q, want app.kubernetes.io/name (the rules' job names)", sm.Spec.JobLabel)
	}
	scraped := map[string]bool{}
	for _, name := range sortedKeys(m.services) {
		s := m.services[name]
		if labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(s.Labels)) {
			if s.Labels["app.kubernetes.io/component"] != "metrics" {
				t.Errorf("ServiceMonitor selects Service %s, which is not a metrics Service", name)
			}
			scraped[s.Labels[sm.Spec.JobLabel]] = true
		}
	}
	if got, want := sortedKeys(scraped), sortedKeys(jobs); !slices.Equal(got, want) {
		t.Errorf("ServiceMonitor scrapes jobs %v, the rules expect %v", got, want)
	}
}

func TestKubernetesIngressScaling(t *testing.T) {
	m := loadBase(t)
	ing := m.workloads["burnrate-ingress"]
	if len(m.hpas) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("%d HPAs and %d PDBs, want one of each (the ingress)", len(m.hpas), len(m.pdbs))
	}
	for name, h := range m.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != ing.name {
			t.Errorf("HPA %s: targets %s %s %s, want apps/v1 Deployment %s", name, ref.APIVersion, ref.Kind, ref.Name, ing.name)
		}
		cpu := false
		for _, mt := range h.Spec.Metrics {
			if r := mt.Resource; mt.Type == autoscalingv2.ResourceMetricSourceType && r != nil && r.Name == corev1.ResourceCPU &&
				r.Target.Type == autoscalingv2.UtilizationMetricType && r.Target.AverageUtilization != nil && *r.Target.AverageUtilization == 70 {
				cpu = true
			}
		}
		if !cpu {
			t.Errorf("HPA %s: want CPU utilization 70 %%", name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != ing.replicas || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HPA %s: minReplicas %v maxReplicas %d, want min = the Deployment's %d <= max", name, h.Spec.MinReplicas, h.Spec.MaxReplicas, ing.replicas)
		}
	}
	for name, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(ing.pod.Labels)) {
			t.Errorf("PDB %s: selector %v does not select the ingress pods", name, p.Spec.Selector)
		}
		if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 2 {
			t.Errorf("PDB %s: minAvailable %v, want 2", name, p.Spec.MinAvailable)
		} else if int32(p.Spec.MinAvailable.IntValue()) >= ing.replicas {
			t.Errorf("PDB %s: minAvailable %d with %d replicas blocks every drain", name, p.Spec.MinAvailable.IntValue(), ing.replicas)
		}
	}
}

// inputs are the topics each consumer group reads; more replicas than the
// largest one's partitions sit idle.
var inputs = map[string][]string{
	"burnrate-sink":       {ktopics.Usage, ktopics.GPU, ktopics.Anomalies, ktopics.Verdicts, ktopics.BudgetEvents},
	"burnrate-meter":      {ktopics.Usage, ktopics.GPU, ktopics.Spend},
	"burnrate-killswitch": {ktopics.Spend, ktopics.Anomalies},
}

func maxPartitions(t *testing.T, topics []string) int32 {
	t.Helper()
	var n int32
	for _, name := range topics {
		i := slices.IndexFunc(ktopics.Catalog(), func(tp ktopics.Topic) bool { return tp.Name == name })
		if i < 0 {
			t.Fatalf("topic %s is not in the catalog", name)
		}
		n = max(n, ktopics.Catalog()[i].Partitions)
	}
	return n
}

func TestProductionOverlay(t *testing.T) {
	base := loadBase(t)
	k := loadKustomization(t, productionDir)
	if !slices.Equal(k.Resources, []string{"../../base"}) {
		t.Errorf("production: resources %v, want [../../base]", k.Resources)
	}
	pinned := false
	for _, img := range k.Images {
		if img.Name == image {
			pinned = (img.NewTag != "" && img.NewTag != "latest") || img.Digest != ""
		}
	}
	if !pinned {
		t.Errorf("production: images must pin %s to a tag other than latest, or a digest", image)
	}
	if len(k.Patches) == 0 {
		t.Errorf("production: no patches")
	}

	replicas := map[string]int32{}
	for name, w := range base.workloads {
		replicas[name] = w.replicas
	}
	hpaMin := map[string]int32{}
	for name, h := range base.hpas {
		hpaMin[name] = *h.Spec.MinReplicas
	}
	pdbMin := map[string]int{}
	for name, p := range base.pdbs {
		pdbMin[name] = p.Spec.MinAvailable.IntValue()
	}
	baseIDs := map[string]bool{}
	for _, o := range base.all {
		baseIDs[o.kind+"/"+o.namespace+"/"+o.name] = true
	}
	for _, p := range k.Patches {
		file := filepath.Join(productionDir, p.Path)
		for _, o := range readObjects(t, file) {
			if !baseIDs[o.kind+"/"+o.namespace+"/"+o.name] {
				t.Errorf("%s: patches %s %s/%s, which the base does not have", file, o.kind, o.namespace, o.name)
			}
			switch v := o.obj.(type) {
			case *appsv1.Deployment:
				if v.Spec.Replicas != nil {
					replicas[o.name] = *v.Spec.Replicas
				}
			case *autoscalingv2.HorizontalPodAutoscaler:
				if v.Spec.MinReplicas != nil {
					hpaMin[o.name] = *v.Spec.MinReplicas
				}
				if v.Spec.MaxReplicas != 0 && v.Spec.MinReplicas != nil && v.Spec.MaxReplicas < *v.Spec.MinReplicas {
					t.Errorf("%s: HPA %s: maxReplicas below minReplicas", file, o.name)
				}
			case *policyv1.PodDisruptionBudget:
				if v.Spec.MinAvailable != nil {
					pdbMin[o.name] = v.Spec.MinAvailable.IntValue()
				}
			}
		}
	}
	for name, topics := range inputs {
		if limit := maxPartitions(t, topics); replicas[name] > limit {
			t.Errorf("production: %s has %d replicas; its largest input has %d partitions", name, replicas[name], limit)
		}
	}
	if replicas["burnrate-ingress"] != hpaMin["burnrate-ingress"] {
		t.Errorf("production: ingress replicas %d, HPA minReplicas %d", replicas["burnrate-ingress"], hpaMin["burnrate-ingress"])
	}
	if int32(pdbMin["burnrate-ingress"]) >= hpaMin["burnrate-ingress"] {
		t.Errorf("production: PDB minAvailable %d with at least %d ingress replicas blocks every drain", pdbMin["burnrate-ingress"], hpaMin["burnrate-ingress"])
	}
}

// The base's replica counts respect the partitions too.
func TestBaseReplicasWithinPartitions(t *testing.T) {
	m := loadBase(t)
	for name, topics := range inputs {
		w, ok := m.workloads[name]
		if !ok {
			t.Errorf("no workload %s", name)
			continue
		}
		if limit := maxPartitions(t, topics); w.replicas > limit {
			t.Errorf("%s has %d replicas; its largest input has %d partitions", name, w.replicas, limit)
		}
	}
}
