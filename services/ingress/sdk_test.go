package ingress

import (
	"context"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"
)

// The official OpenAI Go SDK, pointed at the ingress, works for chat
// (streaming and not) and embeddings.
func TestOpenAIGoSDK(t *testing.T) {
	h := newRig(t)
	client := openai.NewClient(option.WithBaseURL(h.srv.URL+"/v1/"), option.WithAPIKey(tokenPayments), option.WithMaxRetries(0))
	ctx := context.Background()

	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What does a platform team do?")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) == 0 || resp.Usage.TotalTokens == 0 {
		t.Errorf("chat response %+v", resp)
	}
	if ev := h.rec.last(t); ev.Tokens.Input+ev.Tokens.CachedInput != resp.Usage.PromptTokens || ev.Tokens.Output != resp.Usage.CompletionTokens {
		t.Errorf("event tokens %+v, SDK usage %+v", ev.Tokens, resp.Usage)
	}

	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Stream me a sentence.")},
	})
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if chunks == 0 || len(acc.Choices) == 0 || acc.Choices[0].Message.Content == "" {
		t.Errorf("stream: %d chunks, %+v", chunks, acc.Choices)
	}
	if ev := h.rec.last(t); !ev.Stream || ev.Cost.Estimated || ev.Tokens.Output == 0 {
		t.Errorf("stream event %+v", ev)
	}

	emb, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("budgets that hold")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(emb.Data) == 0 || len(emb.Data[0].Embedding) == 0 {
		t.Errorf("embedding %+v", emb)
	}
	if ev := h.rec.last(t); ev.ServedModel != "text-embedding-3-small" || ev.Tokens.Input == 0 {
		t.Errorf("embedding event %+v", ev)
	}
}
