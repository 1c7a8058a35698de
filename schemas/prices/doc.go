// Package prices owns the price catalog (shipped in catalog.yaml, embedded,
// with org overrides merged over it), its LiteLLM importer, and the cost of
// a call in integer nano-USD.
//
// Rounding rule: each category's tokens × price is summed exactly in
// femto-USD (128-bit integers) and the sum is rounded half up to nano-USD
// once per call. An unknown model is priced 0 with Unpriced=true and counted
// in a metric; pricing never fails in a way that drops an event.
//
// It must never use floats on the money path, and Price must never allocate
// or lock: the ingress calls it on every request.
package prices
