package alert

import (
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
)

// jsonBody is the generic webhook's body: the Alert itself.
type jsonBody struct {
	Alert
	// segmentio/encoding ignores omitzero; this shallower field replaces
	// Alert.PeriodEnd in the JSON so a zero time is left out.
	PeriodEnd *time.Time `json:"period_end,omitempty"`
}

// slackBody is a Slack incoming webhook message.
type slackBody struct {
	Text string `json:"text"`
}

// slackEmoji is indexed like severities.
var slackEmoji = [len(severities)]string{":information_source:", ":warning:", ":rotating_light:"}

func (h *hook) body(a Alert) ([]byte, error) {
	if h.slack {
		return json.Marshal(slackBody{Text: slackText(a)})
	}
	b := jsonBody{Alert: a}
	if !a.PeriodEnd.IsZero() {
		b.PeriodEnd = &a.PeriodEnd
	}
	return json.Marshal(b)
}

// slackText is the emoji of the severity, the title in bold and the text
// on the next line.
func slackText(a Alert) string {
	var b strings.Builder
	b.WriteString(slackEmoji[severityRank(a.Severity)])
	b.WriteString(" *")
	b.WriteString(slackEscape.Replace(a.Title))
	b.WriteString("*")
	if a.Text != "" {
		b.WriteString("\n")
		b.WriteString(slackEscape.Replace(a.Text))
	}
	return b.String()
}

// slackEscape escapes what Slack's mrkdwn reads as markup
// (https://api.slack.com/reference/surfaces/formatting#escaping).
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
