package killswitch

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
	"go.uber.org/zap"

	"github.com/burnrate/burnrate/schemas/events"
)

// adminPrefix starts IssuedBy of manual verdicts ("admin:<actor>"), which
// is how a restarted killswitch knows which kills to keep.
const adminPrefix = "admin:"

// maxManualTTL bounds a manual kill; longer ones are budgets' job.
const maxManualTTL = 90 * 24 * time.Hour

// admin serves the admin API: budgets, verdicts, manual kill and lift.
type admin struct {
	token  string
	locked func(func())
	eng    *engine
	view   *view
	now    func() time.Time
	log    *zap.Logger
}

func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/budgets", a.budgets)
	mux.HandleFunc("GET /v1/verdicts", a.verdicts)
	mux.HandleFunc("POST /v1/verdicts/kill", a.kill)
	mux.HandleFunc("POST /v1/verdicts/lift", a.lift)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		got, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			apiError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong admin token (Authorization: Bearer ...)", "")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (a *admin) budgets(w http.ResponseWriter, _ *http.Request) {
	var out []jsonBudget
	a.locked(func() { out = a.eng.snapshot(a.now()) })
	if out == nil {
		out = []jsonBudget{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"budgets": out})
}

func (a *admin) verdicts(w http.ResponseWriter, _ *http.Request) {
	out := a.view.active()
	if out == nil {
		out = []events.Verdict{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"verdicts": out})
}

// manualRequest is the body of kill and lift.
type manualRequest struct {
	Subject string `json:"subject"`
	TTL     string `json:"ttl"` // kill only, Go duration, e.g. "2h"
	Reason  string `json:"reason"`
	Actor   string `json:"actor"` // who asks; recorded in the budget event
}

func (a *admin) kill(w http.ResponseWriter, r *http.Request) { a.manual(w, r, true) }
func (a *admin) lift(w http.ResponseWriter, r *http.Request) { a.manual(w, r, false) }

func (a *admin) manual(w http.ResponseWriter, r *http.Request, kill bool) {
	var req manualRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "invalid_request", "body must be JSON: "+err.Error(), "")
		return
	}
	v := events.Verdict{Schema: events.SchemaVerdict, Subject: req.Subject, Reason: req.Reason}
	if req.Actor == "" {
		req.Actor = "admin"
	}
	now := a.now().UTC()
	v.ID, v.IssuedAt, v.IssuedBy = events.NewID(now), now, adminPrefix+req.Actor
	kind := events.BudgetManualLift
	if kill {
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil || ttl <= 0 || ttl > maxManualTTL {
			apiError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("ttl: %q must be a duration between 1s and %s", req.TTL, maxManualTTL), "ttl")
			return
		}
		v.Action, v.ExpiresAt, kind = events.ActionBlock, now.Add(ttl), events.BudgetManualKill
	} else {
		v.Action, v.ExpiresAt = events.ActionAllow, now.Add(24*time.Hour)
	}
	if err := v.Validate(); err != nil {
		var fe *events.FieldError
		field := ""
		if errors.As(err, &fe) {
			field = fe.Field
		}
		apiError(w, http.StatusBadRequest, "invalid_request", err.Error(), field)
		return
	}
	ev := events.BudgetEvent{Kind: kind, Severity: events.SeverityWarning, Subject: v.Subject, Actor: v.IssuedBy,
		Reason: fmt.Sprintf("%s by %s: %s", map[bool]string{true: "killed", false: "lifted"}[kill], req.Actor, v.Reason)}
	if kill {
		ev.Reason += fmt.Sprintf(" (until %s)", v.ExpiresAt.Format(time.RFC3339))
	}
	req2 := &request{verdict: v, event: ev, done: make(chan error, 1)}
	a.locked(func() { a.eng.reqs = append(a.eng.reqs, req2) })
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	select {
	case err := <-req2.done:
		if err != nil {
			apiError(w, http.StatusServiceUnavailable, "not_committed", err.Error(), "")
			return
		}
	case <-ctx.Done():
		apiError(w, http.StatusGatewayTimeout, "timeout", "the verdict was queued but not committed within 10s; check GET /v1/verdicts", "")
		return
	}
	a.log.Info("manual verdict", zap.String("subject", v.Subject), zap.String("action", string(v.Action)),
		zap.String("actor", req.Actor), zap.Time("expires_at", v.ExpiresAt))
	writeJSON(w, http.StatusOK, map[string]any{"verdict": v})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func apiError(w http.ResponseWriter, status int, typ, msg, field string) {
	e := map[string]any{"type": typ, "message": msg}
	if field != "" {
		e["field"] = field
	}
	writeJSON(w, status, map[string]any{"error": e})
}
