package ingress

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/encoding/json"

	"github.com/burnrate/burnrate/schemas/events"
	"github.com/burnrate/burnrate/schemas/prices"
	"github.com/burnrate/burnrate/schemas/prices/normalize"
)

// maxCollectItems bounds one collector request.
const maxCollectItems = 10_000

// rawUsage is the collector's second input form: a provider's raw usage
// object plus attribution, for apps that call providers directly.
type rawUsage struct {
	ID          string             `json:"id"`
	OccurredAt  time.Time          `json:"occurred_at"`
	Provider    string             `json:"provider"`
	Model       string             `json:"model"`
	Usage       json.RawMessage    `json:"usage"`
	Attribution events.Attribution `json:"attribution"`
	LatencyMS   int64              `json:"latency_ms"`
	Status      events.Status      `json:"status"`
	Batch       bool               `json:"batch"`
}

type itemError struct {
	Index  int      `json:"index"`
	Errors []string `json:"errors"`
}

// collect takes a JSON array or NDJSON of usage events (Burnrate's schema,
// or raw provider usage with attribution). Every item is validated first: a
// request with any bad item is refused whole (400, per-item errors), so
// nothing is dropped silently. Items whose id was seen recently are skipped
// (idempotent retries).
func (g *Gateway) collect(w http.ResponseWriter, r *http.Request) {
	ep := endpoint{name: "usage"}
	key, ok := g.keyOf(w, r, ep)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		g.fail(w, ep, http.StatusRequestEntityTooLarge, "request_too_large", fmt.Sprintf("body over %d bytes or unreadable: %v", g.cfg.MaxBodyBytes, err), "")
		return
	}
	items, err := splitItems(body)
	if err != nil {
		g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", err.Error(), "")
		return
	}
	now := g.now()
	evs := make([]*events.Usage, 0, len(items))
	var bad []itemError
	for i, raw := range items {
		ev, errs := g.collectItem(key, raw, now)
		if len(errs) > 0 {
			bad = append(bad, itemError{Index: i, Errors: errs})
			continue
		}
		evs = append(evs, ev)
	}
	if len(bad) > 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		b, _ := json.Marshal(map[string]any{
			"error": map[string]any{"type": "invalid_usage_events", "message": fmt.Sprintf("%d of %d events are invalid; none were accepted", len(bad), len(items))},
			"items": bad,
		})
		w.Write(b)
		return
	}
	accepted, dupes := 0, 0
	for _, ev := range evs {
		if g.seen.add(ev.ID) {
			dupes++
			continue
		}
		if err := g.emitter.Emit(ev); err != nil {
			g.seen.remove(ev.ID)
			g.fail(w, ep, http.StatusServiceUnavailable, "spool_full", fmt.Sprintf("accepted %d events, then: %v; retry the rest (ids make retries safe)", accepted, err), "")
			return
		}
		accepted++
	}
	g.metrics.collected.Add(float64(accepted))
	g.metrics.collectDupes.Add(float64(dupes))
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"accepted":%d,"duplicates":%d}`+"\n", accepted, dupes)
}

// splitItems accepts a JSON array or newline-delimited JSON objects.
func splitItems(body []byte) ([]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body: send a JSON array or NDJSON of usage events")
	}
	var items []json.RawMessage
	if body[0] == '[' {
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, fmt.Errorf("body is not a JSON array of objects: %w", err)
		}
	} else {
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				items = append(items, append(json.RawMessage(nil), line...))
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading NDJSON: %w", err)
		}
	}
	if len(items) > maxCollectItems {
		return nil, fmt.Errorf("%d events in one request; send at most %d", len(items), maxCollectItems)
	}
	return items, nil
}

func (g *Gateway) collectItem(key *Key, raw json.RawMessage, now time.Time) (*events.Usage, []string) {
	var probe struct {
		Schema string `json:"schema"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, []string{"not a JSON object: " + err.Error()}
	}
	var ev events.Usage
	if probe.Schema != "" {
		if probe.Schema != events.SchemaUsage {
			return nil, []string{fmt.Sprintf("schema: %q is not %s", probe.Schema, events.SchemaUsage)}
		}
		u, err := events.DecodeUsage(raw)
		if err != nil {
			return nil, []string{err.Error()}
		}
		ev = u
	} else {
		var ru rawUsage
		if err := json.Unmarshal(raw, &ru); err != nil {
			return nil, []string{"not a usage object: " + err.Error()}
		}
		if ru.Provider == "" || ru.Model == "" || len(ru.Usage) == 0 {
			return nil, []string{"provider, model and usage are required (or send a usage.v1 event with \"schema\")"}
		}
		tok, err := normalize.Usage(ru.Provider, ru.Usage)
		if err != nil {
			return nil, []string{"usage: " + err.Error()}
		}
		if ru.OccurredAt.IsZero() {
			ru.OccurredAt = now
		}
		if ru.ID == "" {
			ru.ID = events.NewID(ru.OccurredAt)
		}
		if ru.Status == "" {
			ru.Status = events.StatusOK
		}
		ev = events.Usage{Schema: events.SchemaUsage, ID: ru.ID, OccurredAt: ru.OccurredAt.UTC(), Attribution: ru.Attribution,
			Provider: ru.Provider, RequestedModel: ru.Model, ServedModel: ru.Model, Tokens: tok, LatencyMS: ru.LatencyMS, Status: ru.Status}
		ev.Cost = g.pricer.Price(prices.Call{Provider: ru.Provider, Model: ru.Model, Batch: ru.Batch}, tok)
	}
	ev.ReceivedAt = now.UTC()
	// The key decides who pays; the item may add detail when the key allows.
	ev.Attribution = key.owns(ev.Attribution)
	if err := ev.Validate(); err != nil {
		var msgs []string
		for _, e := range unjoinErrors(err) {
			msgs = append(msgs, e.Error())
		}
		return nil, msgs
	}
	return &ev, nil
}

func unjoinErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// idSet remembers the most recent event ids (bounded FIFO).
type idSet struct {
	mu   sync.Mutex
	set  map[[16]byte]struct{}
	ring [][16]byte
	next int
}

func newIDSet(capacity int) *idSet {
	return &idSet{set: make(map[[16]byte]struct{}, capacity), ring: make([][16]byte, capacity)}
}

// add records id and reports whether it was already there.
func (s *idSet) add(id string) bool {
	u, err := uuid.Parse(id)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.set[u]; ok {
		return true
	}
	old := s.ring[s.next]
	if old != ([16]byte{}) {
		delete(s.set, old)
	}
	s.ring[s.next] = u
	s.next = (s.next + 1) % len(s.ring)
	s.set[u] = struct{}{}
	return false
}

func (s *idSet) remove(id string) {
	u, err := uuid.Parse(id)
	if err != nil {
		return
	}
	s.mu.Lock()
	delete(s.set, u)
	s.mu.Unlock()
}

// check answers allow, deny or downgrade for an attribution, from the cache,
// for apps that call providers directly.
func (g *Gateway) check(w http.ResponseWriter, r *http.Request) {
	ep := endpoint{name: "check"}
	key, ok := g.keyOf(w, r, ep)
	if !ok {
		return
	}
	var req struct {
		Model       string             `json:"model"`
		Attribution events.Attribution `json:"attribution"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		g.fail(w, ep, http.StatusBadRequest, "invalid_request_error", "body must be {\"model\": ..., \"attribution\": {...}}: "+errString(err), "")
		return
	}
	a := key.owns(req.Attribution)
	resp := map[string]any{"decision": "allow"}
	if !g.ready() && !g.cfg.FailOpen {
		resp = map[string]any{"decision": "deny", "reason": "verdict cache not ready"}
	} else {
		d := g.verdicts.Check(subjectsOf(&a, req.Model, g.tagKeys), 0)
		if d.HasReservation() {
			g.verdicts.Reconcile(d.Reservation, 0)
		}
		switch d.Action {
		case events.ActionBlock, events.ActionThrottle:
			resp = map[string]any{"decision": "deny", "reason": d.Reason()}
			if d.Verdict != nil {
				resp["subject"] = d.Verdict.Subject
				resp["limit_nano_usd"] = d.Verdict.LimitNanoUSD
				resp["spent_nano_usd"] = d.Verdict.SpentNanoUSD
				resp["resets_at"] = d.Verdict.ExpiresAt.UTC().Format(time.RFC3339)
			}
		case events.ActionDowngrade:
			resp = map[string]any{"decision": "downgrade", "downgrade_to": d.DowngradeTo, "reason": d.Reason()}
		}
	}
	b, _ := json.Marshal(resp)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// models lists the models the key may call, OpenAI-style.
func (g *Gateway) models(w http.ResponseWriter, r *http.Request) {
	ep := endpoint{name: "models"}
	key, ok := g.keyOf(w, r, ep)
	if !ok {
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, rt := range g.cfg.Routes {
		if key.allows(rt.Model) {
			list.Data = append(list.Data, model{ID: rt.Model, Object: "model", OwnedBy: rt.Provider})
		}
	}
	b, _ := json.Marshal(list)
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// owns applies the key to an attribution a caller sent: the key decides who
// pays; the caller may add detail only when the key allows it.
func (k *Key) owns(a events.Attribution) events.Attribution {
	if !k.AttributionHeaders {
		a = events.Attribution{}
	}
	a.Org, a.Team, a.App, a.Env, a.VirtualKeyID = k.Org, k.Team, k.App, k.Env, k.ID
	return a
}
